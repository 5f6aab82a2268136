//! Sample images built from busybox-static (being written).

//! The deploy engine shared by deploy-remote and rollback (being written).

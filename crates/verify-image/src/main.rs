//! `verify-image`: see the contract in spec/actions.md and the crate's library.

fn main() {
    verify_image::main()
}

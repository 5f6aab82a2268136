//! `push-registry`: see the contract in spec/actions.md and the crate's library.

fn main() {
    push_registry::main()
}

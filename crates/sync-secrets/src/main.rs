//! `sync-secrets`: see the contract in spec/actions.md and the library docs.

fn main() {
    let args = gangplank_core::input::parse_inputs::<sync_secrets::Args>();
    gangplank_core::actions::main_with(|| sync_secrets::run(args))
}

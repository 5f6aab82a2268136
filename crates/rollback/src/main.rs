//! `rollback`: see the contract in spec/actions.md. Not built yet.

fn main() {
    eprintln!("rollback: not implemented yet");
    std::process::exit(2);
}

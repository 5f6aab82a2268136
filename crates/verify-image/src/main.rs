//! `verify-image`: see the contract in spec/actions.md. Not built yet.

fn main() {
    eprintln!("verify-image: not implemented yet");
    std::process::exit(2);
}

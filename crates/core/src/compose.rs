//! docker compose and docker inspect command builders and parsers (being written).

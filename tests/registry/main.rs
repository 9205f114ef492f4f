//! The registry store against real databases: SQLite in a temporary
//! directory always, PostgreSQL from `TEST_DATABASE_URL` when it is set
//! (each test in a database of its own, dropped at its end).

mod databases;
mod outage;
mod schema;
mod sync;
mod virtual_servers;
mod writes;

//! Rebuilds the crate when a migration is added: `sqlx::migrate!` embeds the migration files at
//! compile time but does not tell cargo to watch the directories.

fn main() {
    println!("cargo:rerun-if-changed=src/store/migrations");
}

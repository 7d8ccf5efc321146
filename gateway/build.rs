//! Rebuilds the gateway when a migration is added or changed: `sqlx::migrate!` embeds the
//! files of `sql/` at compile time, and cargo does not otherwise know to look there.
fn main() {
    println!("cargo:rerun-if-changed=../sql");
}

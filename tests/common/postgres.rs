//! The PostgreSQL server `scripts/test.sh` starts (`scripts/postgres.sh`):
//! a fresh database per test. Without one a test is skipped locally and
//! fails under CI (`CI` set).

/// The server's admin URL (`.../postgres`).
pub fn admin() -> Option<String> {
    let Ok(admin) = std::env::var("STEPSTITCH_TEST_POSTGRES") else {
        let msg = "STEPSTITCH_TEST_POSTGRES unset: run scripts/test.sh";
        assert!(std::env::var_os("CI").is_none(), "{msg}");
        eprintln!("SKIPPED: {msg}");
        return None;
    };
    Some(admin)
}

/// The URL of database `name` on the server (which may not exist yet).
pub fn url_of(admin: &str, name: &str) -> String {
    format!("{}/{name}", admin.rsplit_once('/').unwrap().0)
}

/// (Re)creates database `name`, empty.
pub fn create(admin: &str, name: &str) {
    let (admin, name) = (admin.to_owned(), name.to_owned());
    // A plain thread: the blocking client must not run inside async code.
    std::thread::spawn(move || {
        let mut c = postgres::Client::connect(&admin, postgres::NoTls).unwrap();
        c.batch_execute(&format!("DROP DATABASE IF EXISTS {name}"))
            .unwrap();
        c.batch_execute(&format!("CREATE DATABASE {name}")).unwrap();
    })
    .join()
    .unwrap();
}

/// A new, empty database named after the test, and its URL.
pub fn fresh_database(test: &str) -> Option<String> {
    let admin = admin()?;
    let name = format!("{test}_{}", std::process::id());
    create(&admin, &name);
    Some(url_of(&admin, &name))
}

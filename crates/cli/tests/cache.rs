//! The page cache (`spec.cache.page`) with real nginx, php-fpm, MariaDB and WordPress: what is
//! cached, what never is, and that no visitor gets an old page once a change is done.

mod common;

use std::time::Duration;

use common::*;

fn start() -> (Cluster, String) {
    let (c, _) = Cluster::up(
        "apiVersion: hapress.dev/v1alpha1\nkind: WordPressCluster\nmetadata: {name: cache}\nspec:\n  site: {environment: local}\n  web: {replicas: 2}\n",
    );
    let auth = format!(
        "Basic {}",
        base64(format!("admin:{}", c.application_password()).as_bytes())
    );
    (c, auth)
}

#[test]
fn anonymous_pages_are_cached_never_private_ones_and_every_change_empties_the_cache() {
    let (c, auth) = start();
    let port = c.http_port;

    // A visitor's homepage comes from the cache after the first render.
    let home = cached(c.http_port, "/");
    assert_eq!(home.code, 200);
    assert!(home.body.contains("My WordPress Site"), "{}", home.body);

    // Never served from or stored in the cache; each asked twice (a second ask would be a
    // HIT if the first had been stored). nginx consults the cache for GET and HEAD only:
    // other methods get no X-Cache at all.
    type Headers<'a> = &'a [(&'a str, &'a str)];
    let bypass: &[(&str, &str, Headers)] = &[
        (
            "GET",
            "/",
            &[("Cookie", "wordpress_logged_in_abc=admin%7C1")],
        ),
        ("GET", "/", &[("Cookie", "a=b; comment_author_abc=Ann")]),
        ("GET", "/", &[("Cookie", "wp-postpass_abc=x")]),
        ("GET", "/", &[("Cookie", "wordpress_no_cache=1")]),
        ("GET", "/", &[("Authorization", "Basic eDp5")]),
        ("POST", "/", &[]),
        ("GET", "/wp-login.php", &[]),
        ("GET", "/wp-admin/", &[]),
        ("GET", "/wp-cron.php", &[]),
        ("GET", "/xmlrpc.php", &[]),
        ("GET", "/?rest_route=/", &[]),
        ("GET", "/wp-json/", &[]),
        ("GET", "/?p=1&preview=true", &[]),
        ("POST", "/wp-comments-post.php", &[]),
    ];
    for (method, path, headers) in bypass {
        for round in 0..2 {
            let a = req(port, method, path, headers, "");
            assert_eq!(
                a.cache(),
                if *method == "GET" { "BYPASS" } else { "" },
                "{method} {path} {headers:?} (ask {round}): {}",
                a.head
            );
        }
    }
    // Static files are nginx's own: no PHP, no page cache.
    let css = req(port, "GET", "/wp-includes/css/dashicons.min.css", &[], "");
    assert_eq!(
        (css.code, css.cache()),
        (200, String::new()),
        "{}",
        css.head
    );

    // Every kind of change empties the cache: the next visitor sees it at once.
    let title = format!("Cached post {}", std::process::id());
    let post = rest(
        c.http_port,
        &auth,
        "POST",
        "/wp/v2/posts",
        &format!("{{\"title\":\"{title}\",\"content\":\"first words\",\"status\":\"publish\"}}"),
    );
    let id = post["id"].as_u64().unwrap();
    let link = format!("/?p={id}");
    let after = req(port, "GET", "/", &[], "");
    assert!(
        after.body.contains(&title),
        "published post missing: {}",
        after.head
    );

    let archive = "/?cat=1".to_string();
    let changes: Vec<(&str, &String, String, String, String)> = vec![
        (
            "post updated",
            &link,
            format!("/wp/v2/posts/{id}"),
            "{\"content\":\"second words\"}".into(),
            "second words".into(),
        ),
        (
            "comment approved",
            &link,
            "/wp/v2/comments".into(),
            format!("{{\"post\":{id},\"content\":\"a visible comment\",\"status\":\"approved\"}}"),
            "a visible comment".into(),
        ),
        (
            "site title",
            &link,
            "/wp/v2/settings".into(),
            "{\"title\":\"Renamed Site\"}".into(),
            "Renamed Site".into(),
        ),
        (
            "category renamed",
            &archive,
            "/wp/v2/categories/1".into(),
            "{\"name\":\"Renamed Category\"}".into(),
            "Renamed Category".into(),
        ),
    ];
    for (what, page, route, body, shows) in changes {
        let before = cached(c.http_port, page);
        assert!(!before.body.contains(&shows), "{what}: already there");
        rest(c.http_port, &auth, "POST", &route, &body);
        let a = req(port, "GET", page, &[], "");
        assert!(
            a.body.contains(&shows),
            "{what}: the visitor got the old page ({})",
            a.cache()
        );
    }
    // Trashed: gone from the homepage at once.
    cached(c.http_port, "/");
    rest(
        c.http_port,
        &auth,
        "DELETE",
        &format!("/wp/v2/posts/{id}"),
        "",
    );
    let a = req(port, "GET", "/", &[], "");
    assert!(
        !a.body.contains(&title),
        "trashed post still shown ({})",
        a.cache()
    );

    // A change made outside a web request (here PHP run in the site, like wp-cli) too.
    cached(c.http_port, "/");
    c.site_php(
        "wp_insert_post(['post_title' => 'From the command line', 'post_status' => 'publish']);",
    );
    let a = req(port, "GET", "/", &[], "");
    assert!(a.body.contains("From the command line"), "{}", a.cache());

    // `hapress status` counts what the cache did (from nginx's log, every second or so).
    let counted = wait_for(Duration::from_secs(15), || {
        let pc = &c.status()["pageCache"];
        pc["hit"].as_u64().unwrap_or(0) >= 5 && pc["bypass"].as_u64().unwrap_or(0) >= 28
    });
    assert!(counted.is_some(), "{}", c.status()["pageCache"]);
    let table = text(&run(&["status", "--state-dir", &c.state_dir()]));
    assert!(table.contains("page cache: "), "{table}");
    // The same counters as Prometheus text.
    let prom = text(&run(&[
        "status",
        "--prometheus",
        "--state-dir",
        &c.state_dir(),
    ]));
    let value = |series: &str| {
        prom.lines()
            .find_map(|l| l.strip_prefix(series)?.trim().parse::<f64>().ok())
            .unwrap_or_else(|| panic!("no {series} in:\n{prom}"))
    };
    assert!(value(r#"hapress_page_cache_requests_total{result="hit"}"#) >= 5.0);
    assert!(value(r#"hapress_page_cache_requests_total{result="bypass"}"#) >= 28.0);
    assert_eq!(
        value(r#"hapress_component_up{component="nginx",kind="nginx",role="load-balancer"}"#),
        1.0
    );
    assert_eq!(value("hapress_supervisor_running"), 1.0);
}

/// Logs `user` in through wp-login.php; returns the cookies of the session.
fn log_in(port: u16, user: &str, password: &str) -> String {
    let a = req(
        port,
        "POST",
        "/wp-login.php",
        &[
            ("Content-Type", "application/x-www-form-urlencoded"),
            ("Cookie", "wordpress_test_cookie=WP%20Cookie%20check"),
        ],
        &format!("log={user}&pwd={password}&testcookie=1&redirect_to=%2F"),
    );
    assert_eq!(a.code, 302, "login of {user}: {}", a.head);
    let cookies = a.cookies().join("; ");
    assert!(cookies.contains("wordpress_logged_in_"), "{}", a.head);
    cookies
}

#[test]
fn logged_in_users_never_see_each_others_pages_and_visitors_never_see_theirs() {
    let (c, auth) = start();
    let port = c.http_port;
    let pw = "A-long-test-password-1";
    for name in ["alice", "bob"] {
        rest(
            c.http_port,
            &auth,
            "POST",
            "/wp/v2/users",
            &format!(
                "{{\"username\":\"{name}\",\"email\":\"{name}@example.com\",\"password\":\"{pw}\",\"name\":\"{name}-display\",\"roles\":[\"editor\"]}}"
            ),
        );
    }
    let sessions: Vec<(&str, String)> = ["alice", "bob"]
        .into_iter()
        .map(|u| (u, log_in(port, u, pw)))
        .collect();
    // Visitors, Alice and Bob take turns on the same pages; each sees only their own.
    for _ in 0..3 {
        for path in ["/", "/?p=1"] {
            for (user, cookies) in &sessions {
                let a = req(port, "GET", path, &[("Cookie", cookies)], "");
                assert_eq!(a.cache(), "BYPASS", "{user} {path}: {}", a.head);
                assert!(a.body.contains(&format!("{user}-display")), "{user} {path}");
                for (other, _) in &sessions {
                    if other != user {
                        assert!(
                            !a.body.contains(&format!("{other}-display")),
                            "{user} saw {other}"
                        );
                    }
                }
            }
            let v = req(port, "GET", path, &[], "");
            assert!(
                !v.body.contains("alice-display")
                    && !v.body.contains("bob-display")
                    && !v.body.contains("id=\"wpadminbar\""),
                "a visitor saw a logged-in page at {path} ({})",
                v.cache()
            );
        }
    }
}

/// Visitors keep asking for the homepage while a post is published: every answer to a request
/// sent after the publish request returned lists the post (none comes from an old copy).
#[test]
fn no_visitor_gets_an_old_page_after_a_change_returns() {
    let (c, auth) = start();
    cached(c.http_port, "/");
    let title = format!("Under load {}", std::process::id());
    let seen = visitors_during(&[c.http_port; 4], &title, || {
        publish(c.http_port, &auth, &title)
    });
    assert!(
        seen.after > 20 && seen.hits > 10,
        "too little traffic: {seen:?}"
    );
    assert_eq!(seen.stale, 0, "old pages after the publish: {seen:?}");
}

/// A page whose rendering began before a change and ended after it holds what was there before:
/// it is answered but not stored, so the next visitor gets a fresh render.
#[test]
fn a_page_rendered_across_a_change_is_not_stored() {
    let (c, auth) = start();
    let port = c.http_port;
    // A test-only must-use plugin: `?slow` pages stop in the footer (after the posts were
    // read) until the test says so.
    let site = format!("{}/site", c.state_dir());
    let started = format!("{site}/wp-content/uploads/slow-started");
    let go = format!("{site}/wp-content/uploads/slow-go");
    std::fs::write(
        format!("{site}/wp-content/mu-plugins/zz-test-slow.php"),
        format!(
            "<?php\nadd_action('wp_footer', function () {{ if (isset($_GET['slow'])) {{ touch('{started}'); for ($i = 0; $i < 200 && !file_exists('{go}'); $i++) usleep(50000); }} }});\n"
        ),
    )
    .unwrap();
    let slow = std::thread::spawn(move || req(port, "GET", "/?slow=1", &[], ""));
    let entered = wait_for(Duration::from_secs(20), || {
        std::path::Path::new(&started).exists()
    });
    assert!(entered.is_some(), "the slow page never reached its footer");
    let title = format!("Published mid-render {}", std::process::id());
    publish(c.http_port, &auth, &title);
    std::fs::write(&go, "").unwrap();
    let old = slow.join().unwrap();
    assert_eq!(old.code, 200);
    assert!(
        !old.body.contains(&title),
        "the slow page read the posts after the change"
    );
    let next = req(port, "GET", "/?slow=1", &[], "");
    assert_ne!(
        next.cache(),
        "HIT",
        "the page rendered across the change was stored"
    );
    assert!(next.body.contains(&title), "{}", next.cache());
}

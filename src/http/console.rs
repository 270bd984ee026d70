//! The web console: static pages embedded in the binary, served under
//! `/console/` (and `/` redirects there). Plain HTML, CSS and JavaScript
//! modules read from `src/http/console/` at compile time: no build step, no
//! network access beyond this listener. The pages only read the JSON admin
//! API (docs/operations.md, "Web console").
//!
//! Every answer carries a Content-Security-Policy that allows scripts,
//! styles and fetches from this origin only, no inline script or style, no
//! frames and no forms.

use actix_web::http::header;
use actix_web::{web, HttpResponse};

/// The policy of every console answer.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
    connect-src 'self'; img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// The console's files: (name under `/console/`, content type, bytes).
const FILES: &[(&str, &str, &str)] = &[
    ("index.html", "text/html; charset=utf-8", include_str!("console/index.html")),
    ("console.css", "text/css; charset=utf-8", include_str!("console/console.css")),
    ("app.js", "text/javascript; charset=utf-8", include_str!("console/app.js")),
    ("dom.js", "text/javascript; charset=utf-8", include_str!("console/dom.js")),
    ("msgpack.js", "text/javascript; charset=utf-8", include_str!("console/msgpack.js")),
    ("render.js", "text/javascript; charset=utf-8", include_str!("console/render.js")),
    ("overview.js", "text/javascript; charset=utf-8", include_str!("console/overview.js")),
    ("topics.js", "text/javascript; charset=utf-8", include_str!("console/topics.js")),
    ("browser.js", "text/javascript; charset=utf-8", include_str!("console/browser.js")),
    ("groups.js", "text/javascript; charset=utf-8", include_str!("console/groups.js")),
];

pub fn routes(config: &mut web::ServiceConfig) {
    config
        .route("/", web::get().to(to_console))
        .route("/console", web::get().to(to_console))
        .route("/console/", web::get().to(index))
        .route("/console/{file}", web::get().to(file));
}

async fn to_console() -> HttpResponse {
    HttpResponse::Found().insert_header((header::LOCATION, "/console/")).finish()
}

async fn index() -> HttpResponse {
    serve("index.html")
}

async fn file(name: web::Path<String>) -> HttpResponse {
    serve(&name)
}

fn serve(name: &str) -> HttpResponse {
    let mut response = match FILES.iter().find(|(file, _, _)| *file == name) {
        Some((_, content_type, body)) => HttpResponse::Ok()
            .content_type(*content_type)
            .insert_header((header::CACHE_CONTROL, "no-cache"))
            .body(*body),
        None => HttpResponse::NotFound().content_type("text/plain; charset=utf-8").body("no such console file\n"),
    };
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_SECURITY_POLICY, header::HeaderValue::from_static(CONTENT_SECURITY_POLICY));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, header::HeaderValue::from_static("nosniff"));
    headers.insert(header::REFERRER_POLICY, header::HeaderValue::from_static("no-referrer"));
    response
}

#[cfg(test)]
mod tests {
    use actix_web::{test as web_test, App};

    use super::*;

    #[actix_rt::test]
    async fn files_have_their_content_type_and_the_policy() {
        let app = web_test::init_service(App::new().configure(routes)).await;
        for (path, content_type) in [
            ("/console/", "text/html; charset=utf-8"),
            ("/console/console.css", "text/css; charset=utf-8"),
            ("/console/app.js", "text/javascript; charset=utf-8"),
        ] {
            let response = web_test::call_service(&app, web_test::TestRequest::get().uri(path).to_request()).await;
            assert_eq!(response.status(), 200, "{path}");
            let headers = response.headers();
            assert_eq!(headers.get(header::CONTENT_TYPE).unwrap(), content_type, "{path}");
            assert_eq!(headers.get(header::CONTENT_SECURITY_POLICY).unwrap(), CONTENT_SECURITY_POLICY, "{path}");
            assert_eq!(headers.get(header::X_CONTENT_TYPE_OPTIONS).unwrap(), "nosniff", "{path}");
        }
        let root = web_test::call_service(&app, web_test::TestRequest::get().uri("/").to_request()).await;
        assert_eq!(
            (root.status().as_u16(), root.headers().get(header::LOCATION).unwrap().to_str().unwrap()),
            (302, "/console/")
        );
        let missing =
            web_test::call_service(&app, web_test::TestRequest::get().uri("/console/x.js").to_request()).await;
        assert_eq!(missing.status(), 404);
    }

    /// Every module a page imports, and every file index.html names, is embedded.
    #[test]
    fn every_file_the_pages_name_is_served() {
        let served = |name: &str| FILES.iter().any(|(file, _, _)| *file == name);
        for (file, _, text) in FILES {
            let named = text
                .split(['"', '\''])
                .filter_map(|part| part.strip_prefix("./").or_else(|| part.strip_prefix("/console/")))
                .filter(|name| name.ends_with(".js") || name.ends_with(".css"));
            for name in named {
                assert!(served(name), "{file} names {name}, which FILES does not embed");
            }
        }
    }

    /// No page relies on what the policy forbids: inline script or style.
    #[test]
    fn the_pages_need_no_inline_script_or_style() {
        let (_, _, index) = FILES[0];
        assert!(!index.contains("<script>") && !index.contains("style="), "{index}");
        for (file, _, text) in FILES {
            assert!(!text.contains("innerHTML") && !text.contains("outerHTML"), "{file} parses HTML");
        }
    }
}

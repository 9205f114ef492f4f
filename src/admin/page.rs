//! The admin page: plain HTML, JS and CSS compiled into the binary (no
//! build step, nothing fetched at run time).

use axum::http::header;
use axum::response::{IntoResponse, Response};

struct Asset {
    content_type: &'static str,
    body: &'static str,
}

static INDEX: Asset = Asset {
    content_type: "text/html; charset=utf-8",
    body: include_str!("page/index.html"),
};
static SCRIPT: Asset = Asset {
    content_type: "text/javascript; charset=utf-8",
    body: include_str!("page/app.js"),
};
static STYLE: Asset = Asset {
    content_type: "text/css; charset=utf-8",
    body: include_str!("page/style.css"),
};

impl Asset {
    fn respond(&'static self) -> Response {
        ([(header::CONTENT_TYPE, self.content_type)], self.body).into_response()
    }
}

pub async fn index() -> Response {
    INDEX.respond()
}

pub async fn script() -> Response {
    SCRIPT.respond()
}

pub async fn style() -> Response {
    STYLE.respond()
}

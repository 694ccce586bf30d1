//! `GET /`: a plain page until the console exists. On a demo server it shows the
//! demo app's headline numbers; otherwise where to find the API.

use crate::api::error::ApiError;
use crate::AppState;
use axum::extract::State;
use axum::response::Html;
use huiliu_domain::analytics::headline::{headline, Headline};
use huiliu_domain::analytics::LocalDay;
use huiliu_domain::time::to_micros;

pub async fn home(State(state): State<AppState>) -> Result<Html<String>, ApiError> {
    let Some(app) = state.home_app.clone() else {
        return Ok(Html(page(
            "huiliu",
            "<p>huiliu is running. 接口说明 / API description: <a href=\"/v1/openapi.json\">/v1/openapi.json</a></p>",
        )));
    };
    let today = LocalDay::of_micros(app.timezone.zone(), to_micros(jiff::Timestamp::now()));
    let cached = state.activity.fresh(&state.store, &app).await?;
    let numbers = tokio::task::spawn_blocking(move || headline(&cached.index, today))
        .await
        .map_err(|_| {
            ApiError::new(
                axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "the headline failed",
            )
        })?;
    let title = format!("{} · huiliu", escape(&app.name));
    Ok(Html(page(
        &title,
        &body(&app.name, app.timezone.name(), &numbers),
    )))
}

fn percent(share: Option<f64>) -> String {
    share.map_or("—".into(), |s| format!("{:.1}%", s * 100.0))
}

fn body(name: &str, timezone: &str, h: &Headline) -> String {
    let mut rows = vec![
        ("日活 DAU", h.dau.to_string()),
        ("周活 WAU (7 天)", h.wau.to_string()),
        ("月活 MAU (30 天)", h.mau.to_string()),
        ("粘性 DAU/MAU", percent(h.stickiness)),
        ("新用户 New users", h.new_users.to_string()),
    ];
    for (k, share) in &h.retention {
        rows.push((
            match k {
                1 => "次日留存 Day-1 retention",
                7 => "7 日留存 Day-7 retention",
                _ => "30 日留存 Day-30 retention",
            },
            percent(*share),
        ));
    }
    rows.push(("一次性用户 One-and-done", percent(h.one_and_done)));
    if let Some(week) = &h.last_week {
        rows.push((
            "上周 Last week: new / returning / resurrecting / dormant",
            format!(
                "{} / {} / {} / {}",
                week.new.unwrap_or(0),
                week.returning.unwrap_or(0),
                week.resurrecting.unwrap_or(0),
                week.dormant.unwrap_or(0)
            ),
        ));
    }
    let table: String = rows
        .iter()
        .map(|(label, value)| format!("<tr><th>{label}</th><td>{value}</td></tr>"))
        .collect();
    format!(
        "<h1>{}</h1><p>{} · {timezone} · 截至 as of {}</p><table>{table}</table>\
         <p>接口 API: <code>/v1/analytics/active</code>, <code>/v1/analytics/retention</code>, \
         <code>/v1/analytics/lifecycle</code>, <code>/v1/analytics/one-and-done</code>, \
         <code>/v1/analytics/funnel</code> · <a href=\"/v1/openapi.json\">OpenAPI</a></p>",
        escape(name),
        "回流 huiliu",
        h.date
    )
}

fn page(title: &str, body: &str) -> String {
    format!(
        "<!doctype html><html lang=\"zh-CN\"><head><meta charset=\"utf-8\"><title>{title}</title>\
         <style>body{{font-family:sans-serif;max-width:46rem;margin:2rem auto;padding:0 1rem}}\
         th{{text-align:left;font-weight:normal;padding:.3rem 1.5rem .3rem 0}}td{{font-weight:bold}}</style>\
         </head><body>{body}</body></html>"
    )
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

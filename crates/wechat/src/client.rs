//! Calls to WeChat's API over HTTPS (rustls with the Mozilla root certificates
//! compiled in, so no system certificate store is needed) or plain HTTP (the fake
//! WeChat, or a proxy).

use huiliu_domain::messages::Attempt;
use serde_json::{json, Value};
use std::time::Duration;

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum WechatError {
    /// WeChat answered with a non-zero errcode.
    #[error("WeChat answered errcode {errcode}: {errmsg}")]
    Api { errcode: i64, errmsg: String },
    /// The request did not get an answer.
    #[error("cannot reach WeChat: {0}")]
    Transport(String),
    /// An answer that is not what WeChat documents.
    #[error("unexpected answer from WeChat: {0}")]
    Protocol(String),
}

/// A WeChat API client; cheap to clone.
#[derive(Clone, Debug)]
pub struct WechatHttp {
    http: reqwest::Client,
}

impl Default for WechatHttp {
    fn default() -> Self {
        Self {
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .expect("an HTTP client with the built-in TLS roots builds"),
        }
    }
}

fn errcode_of(body: &Value) -> Option<WechatError> {
    let errcode = body.get("errcode").and_then(Value::as_i64).unwrap_or(0);
    (errcode != 0).then(|| WechatError::Api {
        errcode,
        errmsg: body["errmsg"].as_str().unwrap_or_default().to_string(),
    })
}

impl WechatHttp {
    /// `POST /cgi-bin/stable_token` in normal mode (never forced: WeChat allows 20
    /// forced refreshes a day): the live token and its seconds left.
    pub async fn stable_token(
        &self,
        base: &str,
        appid: &str,
        secret: &str,
    ) -> Result<(String, u64), WechatError> {
        let response = self
            .http
            .post(format!("{}/cgi-bin/stable_token", base.trim_end_matches('/')))
            .json(&json!({"grant_type": "client_credential", "appid": appid, "secret": secret, "force_refresh": false}))
            .send()
            .await
            .map_err(|e| WechatError::Transport(without_url(e).to_string()))?;
        token_from(response).await
    }

    /// `GET /cgi-bin/token`, the classic API: every call issues a new token and
    /// the previous one stops working 5 minutes later, so only one system may
    /// use it per AppID. For deployments that already share a classic token.
    pub async fn classic_token(
        &self,
        base: &str,
        appid: &str,
        secret: &str,
    ) -> Result<(String, u64), WechatError> {
        let response = self
            .http
            .get(format!("{}/cgi-bin/token", base.trim_end_matches('/')))
            .query(&[
                ("grant_type", "client_credential"),
                ("appid", appid),
                ("secret", secret),
            ])
            .send()
            .await
            .map_err(|e| WechatError::Transport(without_url(e).to_string()))?;
        token_from(response).await
    }

    /// `GET /wxaapi/newtmpl/gettemplate`: the account's subscription templates, as
    /// WeChat lists them (`priTmplId`, `title`, `content`, `type`, `keywordEnumValueList`).
    pub async fn template_list(&self, base: &str, token: &str) -> Result<Vec<Value>, WechatError> {
        let response = self
            .http
            .get(format!(
                "{}/wxaapi/newtmpl/gettemplate",
                base.trim_end_matches('/')
            ))
            .query(&[("access_token", token)])
            .send()
            .await
            .map_err(|e| WechatError::Transport(without_url(e).to_string()))?;
        let body: Value = response
            .json()
            .await
            .map_err(|e| WechatError::Protocol(without_url(e).to_string()))?;
        if let Some(error) = errcode_of(&body) {
            return Err(error);
        }
        match body.get("data") {
            Some(Value::Array(items)) => Ok(items.clone()),
            None | Some(Value::Null) => Ok(Vec::new()),
            Some(_) => Err(WechatError::Protocol("data is not a list".into())),
        }
    }

    /// `POST /cgi-bin/message/subscribe/send`. Tells apart a request that never
    /// left (WeChat cannot have acted on it) from one that got no answer (it may
    /// have been sent): only the first is safe to retry.
    pub async fn send_subscribe(&self, base: &str, token: &str, body: &Value) -> Attempt {
        let url = format!(
            "{}/cgi-bin/message/subscribe/send?access_token={token}",
            base.trim_end_matches('/')
        );
        let response = match self.http.post(url).json(body).send().await {
            Ok(response) => response,
            Err(e) if e.is_connect() || e.is_builder() => {
                return Attempt::NotSent {
                    reason: without_url(e).to_string(),
                }
            }
            Err(e) => {
                return Attempt::NoAnswer {
                    reason: without_url(e).to_string(),
                }
            }
        };
        let body: Value = match response.json().await {
            Ok(body) => body,
            Err(e) => {
                return Attempt::NoAnswer {
                    reason: without_url(e).to_string(),
                }
            }
        };
        match errcode_of(&body) {
            Some(WechatError::Api { errcode, errmsg }) => Attempt::Refused { errcode, errmsg },
            _ => Attempt::Sent {
                // WeChat's msgid is a 64-bit number; kept as text.
                msgid: match &body["msgid"] {
                    Value::Number(n) => n.to_string(),
                    Value::String(s) => s.clone(),
                    _ => String::new(),
                },
            },
        }
    }
}

/// A token answer: the token and its seconds left, or WeChat's error.
async fn token_from(response: reqwest::Response) -> Result<(String, u64), WechatError> {
    let body: Value = response
        .json()
        .await
        .map_err(|e| WechatError::Protocol(e.to_string()))?;
    if let Some(error) = errcode_of(&body) {
        return Err(error);
    }
    match (body["access_token"].as_str(), body["expires_in"].as_u64()) {
        (Some(token), Some(expires_in)) if !token.is_empty() => Ok((token.to_string(), expires_in)),
        _ => Err(WechatError::Protocol(
            "no access_token in the answer".into(),
        )),
    }
}

/// The access token travels in the URL; it must not reach logs or messages.
fn without_url(e: reqwest::Error) -> reqwest::Error {
    e.without_url()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_request_that_never_left_is_told_apart_and_hides_the_token() {
        // Nothing listens on port 1: the connection is refused before any byte of
        // the request is written, over HTTPS and plain HTTP alike.
        let client = WechatHttp::default();
        for base in ["https://127.0.0.1:1", "http://127.0.0.1:1"] {
            match client
                .send_subscribe(base, "SECRET_TOKEN", &json!({"touser": "o1"}))
                .await
            {
                Attempt::NotSent { reason } => {
                    assert!(!reason.contains("SECRET_TOKEN"), "{reason}")
                }
                other => panic!("{base}: {other:?}"),
            }
        }
    }
}

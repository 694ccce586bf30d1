//! A fake WeChat server: the parts of `api.weixin.qq.com` huiliu calls, with
//! WeChat's rules and error codes, state a test can drive, and faults it can
//! inject. Run it with `huiliu dev fake-wechat --listen ADDR`, or start it in a
//! test with [`FakeWechat::start`].
//!
//! What it does like WeChat: `stable_token` (normal mode returns the live token;
//! `force_refresh` rotates it) and the classic `/cgi-bin/token` (every call
//! rotates), tokens that expire, a rotated-out token that stays valid for a grace
//! period, 40001 for stale tokens; the template list; and
//! `subscribe/send`, which checks the template (40037), the openid (40003), each
//! data value against its field rule (47003 naming the field), one send in
//! flight per user (43108) and the user's one-time credits (43101), which the
//! test grants as a user's accepted prompts would.
//!
//! The same controls over HTTP, for a fake run as a process: `PUT
//! /fake/templates/{id}` (huiliu's template body), `POST /fake/accept`
//! `{"openid", "template_id"}`, `POST /fake/faults` `{"errcode", "times"}` |
//! `{"quota_seconds"}` | `{"delay_ms", "times"}` | `{"drop_after_send": times}`, and
//! `GET /fake/sent`.

use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use huiliu_domain::templates::{Template, TemplateKind};
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::TcpListener;

/// How long a token lives, and how long a rotated-out token still works.
#[derive(Debug, Clone, Copy)]
pub struct TokenPolicy {
    pub lifetime: Duration,
    pub grace: Duration,
}

impl Default for TokenPolicy {
    fn default() -> Self {
        // WeChat: 7200 s; the old token stays valid 5 minutes after a refresh.
        Self {
            lifetime: Duration::from_secs(7200),
            grace: Duration::from_secs(300),
        }
    }
}

/// A fault the next sends meet instead of WeChat's normal answer.
#[derive(Debug, Clone, PartialEq)]
pub enum Fault {
    /// Answer this errcode (e.g. -1 system busy, 45009 quota) to the next `times` sends.
    Errcode { errcode: i64, times: u32 },
    /// Answer 45009 to every send until this long from now.
    QuotaFor(Duration),
    /// Wait this long before answering the next `times` sends.
    Slow { delay: Duration, times: u32 },
    /// Accept the next `times` sends (the message is delivered, the credit spent)
    /// and then drop the connection before the answer is complete: the sender
    /// cannot know the message went out.
    DropAfterSend { times: u32 },
}

/// A message the fake accepted.
#[derive(Debug, Clone, PartialEq)]
pub struct SentMessage {
    pub msgid: u64,
    pub openid: String,
    pub template_id: String,
    pub page: Option<String>,
    pub data: Value,
}

#[derive(Default)]
struct Tokens {
    current: Option<(String, Instant)>,
    /// Rotated-out tokens and when they stop working.
    retired: Vec<(String, Instant)>,
    issued: u64,
}

struct World {
    appid: String,
    secret: String,
    policy: TokenPolicy,
    tokens: Tokens,
    templates: HashMap<String, Template>,
    /// One-time credits per (openid, template).
    credits: HashMap<(String, String), u32>,
    /// Long-term permissions per (openid, template).
    long_term: HashSet<(String, String)>,
    in_flight: HashSet<String>,
    faults: VecDeque<Fault>,
    quota_until: Option<Instant>,
    sent: Vec<SentMessage>,
    next_msgid: u64,
    /// Where WeChat's message push goes, once configured.
    push: Option<PushTarget>,
    /// The last CreateTime pushed, kept increasing so that each event is distinct.
    last_push_time: u64,
}

/// The mini-program's message-push settings: where the fake pushes events, and
/// the Token (and, for safe mode, EncodingAESKey) it signs and seals them with.
#[derive(Debug, Clone)]
pub struct PushTarget {
    pub url: String,
    pub token: String,
    pub aes_key: Option<String>,
}

impl World {
    fn issue(&mut self) -> (String, u64) {
        let now = Instant::now();
        if let Some((old, _)) = self.tokens.current.take() {
            self.tokens.retired.push((old, now + self.policy.grace));
        }
        self.tokens.issued += 1;
        let token = format!("FAKE_{:020}_{}", self.tokens.issued, rand::random::<u64>());
        self.tokens.current = Some((token.clone(), now + self.policy.lifetime));
        (token, self.policy.lifetime.as_secs())
    }

    /// What an accepted prompt grants: a one-time credit, or a long-term permission.
    fn accept(&mut self, openid: &str, template_id: &str) -> u32 {
        let key = (openid.to_string(), template_id.to_string());
        match self.templates.get(template_id).map(|t| t.kind) {
            Some(TemplateKind::LongTerm) => {
                self.long_term.insert(key.clone());
            }
            _ => *self.credits.entry(key.clone()).or_default() += 1,
        }
        self.credits.get(&key).copied().unwrap_or(0)
    }

    /// A signed (and, with an AES key, sealed) push of one event, if pushes are on.
    fn event(&mut self, openid: &str, event: &str, inner: &str) -> Option<Push> {
        let target = self.push.clone()?;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        self.last_push_time = now.max(self.last_push_time + 1);
        let xml = format!(
            "<xml><ToUserName><![CDATA[gh_fake]]></ToUserName><FromUserName><![CDATA[{openid}]]></FromUserName><CreateTime>{}</CreateTime><MsgType><![CDATA[event]]></MsgType><Event><![CDATA[{event}]]></Event>{inner}</xml>",
            self.last_push_time
        );
        Some(Push::new(&target, &self.appid, &xml))
    }

    fn inject(&mut self, fault: Fault) {
        match fault {
            Fault::QuotaFor(duration) => self.quota_until = Some(Instant::now() + duration),
            other => self.faults.push_back(other),
        }
    }

    fn token_valid(&mut self, token: &str) -> bool {
        let now = Instant::now();
        self.tokens.retired.retain(|(_, until)| *until > now);
        matches!(&self.tokens.current, Some((t, until)) if t == token && *until > now)
            || self.tokens.retired.iter().any(|(t, _)| t == token)
    }
}

/// One push, ready to send: the URL with its signature query, and the body.
struct Push {
    url: String,
    body: String,
}

impl Push {
    fn new(target: &PushTarget, appid: &str, xml: &str) -> Self {
        use huiliu_domain::wechat_push::{encrypt, signature};
        let timestamp = "1700000000".to_string();
        let nonce = format!("{:08x}", rand::random::<u32>());
        let mut url = format!(
            "{}{}signature={}&timestamp={timestamp}&nonce={nonce}",
            target.url,
            if target.url.contains('?') { '&' } else { '?' },
            signature(&[&target.token, &timestamp, &nonce])
        );
        let body = match &target.aes_key {
            Some(key) => {
                let sealed =
                    encrypt(key, xml, appid, rand::random()).expect("a valid EncodingAESKey");
                url.push_str(&format!(
                    "&encrypt_type=aes&msg_signature={}",
                    signature(&[&target.token, &timestamp, &nonce, &sealed])
                ));
                format!("<xml><ToUserName><![CDATA[gh_fake]]></ToUserName><Encrypt><![CDATA[{sealed}]]></Encrypt></xml>")
            }
            None => xml.to_string(),
        };
        Self { url, body }
    }

    async fn send(self) -> Result<(), String> {
        let response = reqwest::Client::new()
            .post(&self.url)
            .body(self.body)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        if status.is_success() && text == "success" {
            Ok(())
        } else {
            Err(format!("the push got {status}: {text}"))
        }
    }
}

/// A running fake; dropping it does not stop the server (it lives for the process).
#[derive(Clone)]
pub struct FakeWechat {
    world: Arc<Mutex<World>>,
    addr: SocketAddr,
}

fn answer(errcode: i64, errmsg: &str) -> Json<Value> {
    Json(json!({"errcode": errcode, "errmsg": errmsg}))
}

impl FakeWechat {
    /// Starts a fake for one mini-program (`appid`/`secret`) on `listen` (port 0 picks one).
    pub async fn start(
        listen: &str,
        appid: &str,
        secret: &str,
        policy: TokenPolicy,
    ) -> std::io::Result<Self> {
        let listener = TcpListener::bind(listen).await?;
        let addr = listener.local_addr()?;
        let world = Arc::new(Mutex::new(World {
            appid: appid.into(),
            secret: secret.into(),
            policy,
            tokens: Tokens::default(),
            templates: HashMap::new(),
            credits: HashMap::new(),
            long_term: HashSet::new(),
            in_flight: HashSet::new(),
            faults: VecDeque::new(),
            quota_until: None,
            sent: Vec::new(),
            next_msgid: 294_402_298_110_051_942,
            push: None,
            last_push_time: 0,
        }));
        let router = Router::new()
            .route("/cgi-bin/stable_token", post(stable_token))
            .route("/cgi-bin/token", get(classic_token))
            .route("/wxaapi/newtmpl/gettemplate", get(template_list))
            .route("/cgi-bin/message/subscribe/send", post(send))
            .route(
                "/fake/templates/{template_id}",
                axum::routing::put(control_template),
            )
            .route("/fake/accept", post(control_accept))
            .route("/fake/faults", post(control_fault))
            .route("/fake/sent", get(control_sent))
            .with_state(world.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        Ok(Self { world, addr })
    }

    /// `http://ADDR`: the API base to give huiliu.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn world(&self) -> std::sync::MutexGuard<'_, World> {
        self.world
            .lock()
            .expect("the fake's state lock is never held across a panic")
    }

    /// Adds (or replaces) a template in the account's list.
    pub fn add_template(&self, template: Template) {
        self.world()
            .templates
            .insert(template.template_id.clone(), template);
    }

    /// What a user's accepted prompt grants: one one-time credit, or a long-term permission.
    pub fn accept(&self, openid: &str, template_id: &str) {
        self.world().accept(openid, template_id);
    }

    /// Pushes events to huiliu as WeChat's message push would: popups from
    /// [`FakeWechat::accept_and_push`] and the sent event of every accepted send.
    pub fn push_to(&self, target: PushTarget) {
        self.world().push = Some(target);
    }

    /// A user accepts a prompt: the credit is granted here, and WeChat's
    /// `subscribe_msg_popup_event` is pushed (and answered) before this returns.
    pub async fn accept_and_push(&self, openid: &str, template_id: &str) -> Result<(), String> {
        let pushed = {
            let mut world = self.world();
            world.accept(openid, template_id);
            world.event(
                openid,
                "subscribe_msg_popup_event",
                &format!(
                    "<SubscribeMsgPopupEvent><List><TemplateId><![CDATA[{template_id}]]></TemplateId><SubscribeStatusString><![CDATA[accept]]></SubscribeStatusString><PopupScene>0</PopupScene></List></SubscribeMsgPopupEvent>"
                ),
            )
        };
        match pushed {
            Some(push) => push.send().await,
            None => Err("no push target configured".into()),
        }
    }

    /// One-time credits a user has left for a template.
    pub fn credits(&self, openid: &str, template_id: &str) -> u32 {
        self.world()
            .credits
            .get(&(openid.to_string(), template_id.to_string()))
            .copied()
            .unwrap_or(0)
    }

    pub fn inject(&self, fault: Fault) {
        self.world().inject(fault);
    }

    /// Every message accepted so far, in order.
    pub fn sent(&self) -> Vec<SentMessage> {
        self.world().sent.clone()
    }

    /// How many tokens were issued (refreshes included).
    pub fn tokens_issued(&self) -> u64 {
        self.world().tokens.issued
    }

    /// Ends the current token's life now (as if it expired).
    pub fn expire_token(&self) {
        let mut world = self.world();
        world.tokens.current = None;
        world.tokens.retired.clear();
    }
}

type Shared = Arc<Mutex<World>>;

fn lock(world: &Shared) -> std::sync::MutexGuard<'_, World> {
    world
        .lock()
        .expect("the fake's state lock is never held across a panic")
}

#[derive(Deserialize)]
struct StableTokenRequest {
    grant_type: Option<String>,
    appid: Option<String>,
    secret: Option<String>,
    #[serde(default)]
    force_refresh: bool,
}

fn check_credentials(
    world: &World,
    appid: Option<&str>,
    secret: Option<&str>,
) -> Option<Json<Value>> {
    if appid != Some(world.appid.as_str()) {
        return Some(answer(40013, "invalid appid"));
    }
    if secret != Some(world.secret.as_str()) {
        return Some(answer(40125, "invalid appsecret"));
    }
    None
}

async fn stable_token(State(world): State<Shared>, body: String) -> Json<Value> {
    let Ok(request) = serde_json::from_str::<StableTokenRequest>(&body) else {
        return answer(47001, "data format error");
    };
    let mut world = lock(&world);
    if request.grant_type.as_deref() != Some("client_credential") {
        return answer(40002, "invalid grant_type");
    }
    if let Some(error) =
        check_credentials(&world, request.appid.as_deref(), request.secret.as_deref())
    {
        return error;
    }
    let now = Instant::now();
    // Normal mode: the live token again, with the time it has left, until the last
    // grace period of its life, when WeChat renews it.
    if !request.force_refresh {
        if let Some((token, until)) = &world.tokens.current {
            if *until > now + world.policy.grace {
                return Json(
                    json!({"access_token": token, "expires_in": (*until - now).as_secs()}),
                );
            }
        }
    }
    let (token, expires_in) = world.issue();
    Json(json!({"access_token": token, "expires_in": expires_in}))
}

async fn classic_token(
    State(world): State<Shared>,
    Query(query): Query<HashMap<String, String>>,
) -> Json<Value> {
    let mut world = lock(&world);
    if query.get("grant_type").map(String::as_str) != Some("client_credential") {
        return answer(40002, "invalid grant_type");
    }
    if let Some(error) = check_credentials(
        &world,
        query.get("appid").map(String::as_str),
        query.get("secret").map(String::as_str),
    ) {
        return error;
    }
    let (token, expires_in) = world.issue();
    Json(json!({"access_token": token, "expires_in": expires_in}))
}

fn token_error(world: &mut World, token: Option<&String>) -> Option<Json<Value>> {
    match token {
        None => Some(answer(41001, "access_token missing")),
        Some(token) if !world.token_valid(token) => Some(answer(
            40001,
            "invalid credential, access_token is invalid or not latest",
        )),
        _ => None,
    }
}

async fn template_list(
    State(world): State<Shared>,
    Query(query): Query<HashMap<String, String>>,
) -> Json<Value> {
    let mut world = lock(&world);
    if let Some(error) = token_error(&mut world, query.get("access_token")) {
        return error;
    }
    let mut templates: Vec<&Template> = world.templates.values().collect();
    templates.sort_by(|a, b| a.template_id.cmp(&b.template_id));
    let data: Vec<Value> = templates
        .iter()
        .map(|t| {
            let content: String = t
                .fields
                .iter()
                .map(|f| format!("{}:{{{{{}.DATA}}}}\n", f.name, f.key))
                .collect();
            let enums: Vec<Value> = t
                .fields
                .iter()
                .filter(|f| !f.values.is_empty())
                .map(|f| json!({"keywordCode": format!("{}.DATA", f.key), "enumValueList": f.values}))
                .collect();
            json!({
                "priTmplId": t.template_id,
                "title": t.title,
                "content": content,
                "example": "",
                "type": if t.kind == TemplateKind::LongTerm { 3 } else { 2 },
                "keywordEnumValueList": enums,
            })
        })
        .collect();
    Json(json!({"errcode": 0, "errmsg": "ok", "data": data}))
}

#[derive(Deserialize)]
struct SendRequest {
    touser: Option<String>,
    template_id: Option<String>,
    page: Option<String>,
    data: Option<Value>,
}

/// Clears a user's in-flight mark when a send ends, however it ends.
struct InFlight {
    world: Shared,
    openid: String,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        lock(&self.world).in_flight.remove(&self.openid);
    }
}

async fn send(
    State(shared): State<Shared>,
    Query(query): Query<HashMap<String, String>>,
    body: String,
) -> Response {
    let (delay, guard, drop_answer) = {
        let mut world = lock(&shared);
        if let Some(error) = token_error(&mut world, query.get("access_token")) {
            return error.into_response();
        }
        if world
            .quota_until
            .is_some_and(|until| until > Instant::now())
        {
            return answer(45009, "reach max api daily quota limit").into_response();
        }
        let mut delay = None;
        let mut drop_answer = false;
        match world.faults.front_mut() {
            Some(Fault::Errcode { errcode, times }) => {
                let code = *errcode;
                *times -= 1;
                if *times == 0 {
                    world.faults.pop_front();
                }
                let message = if code == -1 {
                    "system error"
                } else {
                    "injected fault"
                };
                return answer(code, message).into_response();
            }
            Some(Fault::Slow { delay: d, times }) => {
                delay = Some(*d);
                *times -= 1;
                if *times == 0 {
                    world.faults.pop_front();
                }
            }
            Some(Fault::DropAfterSend { times }) => {
                drop_answer = true;
                *times -= 1;
                if *times == 0 {
                    world.faults.pop_front();
                }
            }
            _ => {}
        }
        let Ok(request) = serde_json::from_str::<SendRequest>(&body) else {
            return answer(47001, "data format error hint: [json]").into_response();
        };
        let openid = request.touser.unwrap_or_default();
        if openid.is_empty()
            || !openid
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            return answer(40003, "invalid openid").into_response();
        }
        let template_id = request.template_id.unwrap_or_default();
        let Some(template) = world.templates.get(&template_id).cloned() else {
            return answer(40037, "invalid template_id").into_response();
        };
        let data = request.data.unwrap_or(Value::Null);
        let Some(fields) = data.as_object() else {
            return answer(47003, "argument invalid! data invalid").into_response();
        };
        if let Err(error) = template.check_data(fields) {
            let field = error.field.unwrap_or_else(|| "data".into());
            return answer(47003, &format!("argument invalid! {field}.value invalid"))
                .into_response();
        }
        if !world.in_flight.insert(openid.clone()) {
            return answer(43108, "concurrent limit").into_response();
        }
        let key = (openid.clone(), template_id.clone());
        let permitted =
            world.long_term.contains(&key) || world.credits.get(&key).is_some_and(|c| *c > 0);
        if !permitted {
            world.in_flight.remove(&openid);
            return answer(43101, "user refuse to accept the msg").into_response();
        }
        if let Some(credits) = world.credits.get_mut(&key) {
            if template.kind == TemplateKind::OneTime {
                *credits -= 1;
            }
        }
        world.next_msgid += 1;
        let msgid = world.next_msgid;
        let sent_push = world.event(
            &openid,
            "subscribe_msg_sent_event",
            &format!(
                "<SubscribeMsgSentEvent><List><TemplateId><![CDATA[{template_id}]]></TemplateId><MsgID>{msgid}</MsgID><ErrorCode>0</ErrorCode><ErrorStatus><![CDATA[success]]></ErrorStatus></List></SubscribeMsgSentEvent>"
            ),
        );
        if let Some(push) = sent_push {
            // WeChat pushes the result asynchronously, after answering the send.
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(20)).await;
                let _ = push.send().await;
            });
        }
        world.sent.push(SentMessage {
            msgid,
            openid: openid.clone(),
            template_id,
            page: request.page,
            data,
        });
        let guard = InFlight {
            world: shared.clone(),
            openid,
        };
        (delay.map(|d| (d, msgid)).ok_or(msgid), guard, drop_answer)
    };
    let msgid = match delay {
        Ok((d, msgid)) => {
            // The user's send stays in flight while the answer is slow: a second
            // send to the same user meanwhile gets 43108.
            tokio::time::sleep(d).await;
            msgid
        }
        Err(msgid) => msgid,
    };
    drop(guard);
    if drop_answer {
        // Headers go out, then the body fails: the connection is cut mid-answer.
        let broken = futures_util::stream::once(async {
            Err::<axum::body::Bytes, std::io::Error>(std::io::Error::other("connection dropped"))
        });
        return Response::builder()
            .header("content-type", "application/json")
            .body(axum::body::Body::from_stream(broken))
            .expect("a plain response builds");
    }
    Json(json!({"errcode": 0, "errmsg": "ok", "msgid": msgid})).into_response()
}

async fn control_template(
    State(world): State<Shared>,
    axum::extract::Path(template_id): axum::extract::Path<String>,
    Json(body): Json<Value>,
) -> Response {
    match Template::parse(&template_id, &body) {
        Ok(template) => {
            lock(&world).templates.insert(template_id, template);
            Json(json!({"ok": true})).into_response()
        }
        Err(error) => (
            axum::http::StatusCode::UNPROCESSABLE_ENTITY,
            Json(json!({"error": error.message, "field": error.field})),
        )
            .into_response(),
    }
}

#[derive(Deserialize)]
struct AcceptRequest {
    openid: String,
    template_id: String,
}

async fn control_accept(
    State(world): State<Shared>,
    Json(request): Json<AcceptRequest>,
) -> Json<Value> {
    let credits = lock(&world).accept(&request.openid, &request.template_id);
    Json(json!({ "credits": credits }))
}

#[derive(Deserialize)]
struct FaultRequest {
    errcode: Option<i64>,
    times: Option<u32>,
    quota_seconds: Option<u64>,
    delay_ms: Option<u64>,
    drop_after_send: Option<u32>,
}

async fn control_fault(State(world): State<Shared>, Json(request): Json<FaultRequest>) -> Response {
    let times = request.times.unwrap_or(1).max(1);
    let fault = match (
        request.errcode,
        request.quota_seconds,
        request.delay_ms,
        request.drop_after_send,
    ) {
        (Some(errcode), None, None, None) => Fault::Errcode { errcode, times },
        (None, Some(seconds), None, None) => Fault::QuotaFor(Duration::from_secs(seconds)),
        (None, None, Some(ms), None) => Fault::Slow {
            delay: Duration::from_millis(ms),
            times,
        },
        (None, None, None, Some(times)) => Fault::DropAfterSend {
            times: times.max(1),
        },
        _ => return (
            axum::http::StatusCode::UNPROCESSABLE_ENTITY,
            Json(json!({"error": "give one of errcode, quota_seconds, delay_ms, drop_after_send"})),
        )
            .into_response(),
    };
    lock(&world).inject(fault);
    Json(json!({"ok": true})).into_response()
}

async fn control_sent(State(world): State<Shared>) -> Json<Value> {
    let sent: Vec<Value> = lock(&world)
        .sent
        .iter()
        .map(|m| json!({"msgid": m.msgid, "touser": m.openid, "template_id": m.template_id, "page": m.page, "data": m.data}))
        .collect();
    Json(json!({"sent": sent}))
}

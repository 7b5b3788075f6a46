//! A fake Kubernetes API server on loopback that serves namespaces the way a real one
//! serves them to a metadata-only client: `PartialObjectMetadataList` for a list,
//! newline-delimited `WatchEvent`s of `PartialObjectMetadata` for `?watch=true` (replaying
//! every event after the requested resourceVersion, as the API server's watch cache
//! does), and `PartialObjectMetadata` or a 404 `Status` for a GET of one namespace.
//! Tests drive it: change namespaces with or without a watch event, hold back the list,
//! end or break watches, take the whole server down.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use futures::StreamExt;
use futures::channel::mpsc;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Bytes, Frame, Incoming};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

type Body = BoxBody<Bytes, Infallible>;

/// How the fake answers `GET /api/v1/namespaces/{name}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GetMode {
    /// 200 with the namespace's metadata, or 404 if there is no such namespace.
    Answer,
    /// 500, as an API server whose storage is failing does.
    Fail,
    /// Never answers in a useful time.
    Hang,
}

/// One request the fake received.
#[derive(Clone, Debug)]
pub struct Seen {
    pub path: String,
    pub query: String,
    pub accept: String,
}

#[derive(Default)]
struct State {
    resource_version: u64,
    namespaces: BTreeMap<String, Value>,
    /// Watch event lines by resourceVersion, replayed to watches that resume.
    history: Vec<(u64, String)>,
    /// The bodies of the watches currently open.
    watches: Vec<mpsc::UnboundedSender<String>>,
    requests: Vec<Seen>,
    /// Connections accepted and closed at once while the server is down.
    refused: usize,
    down: bool,
}

pub struct FakeApi {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    get_mode: Arc<Mutex<GetMode>>,
    lists_open: watch::Sender<bool>,
    connections: Arc<Mutex<JoinSet<()>>>,
    accept: tokio::task::JoinHandle<()>,
}

impl Drop for FakeApi {
    fn drop(&mut self) {
        self.accept.abort();
        lock(&self.connections).abort_all();
    }
}

impl FakeApi {
    /// Starts serving `namespaces` (name, labels) on 127.0.0.1, port chosen by the OS.
    pub async fn start(namespaces: &[(&str, &[(&str, &str)])]) -> FakeApi {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind loopback");
        let addr = listener.local_addr().expect("local addr");
        let state: Arc<Mutex<State>> = Arc::default();
        for (name, labels) in namespaces {
            lock(&state).put(name, labels);
        }
        let get_mode = Arc::new(Mutex::new(GetMode::Answer));
        let lists_open = watch::Sender::new(true);
        let connections: Arc<Mutex<JoinSet<()>>> = Arc::default();
        let accept = tokio::spawn(accept_loop(
            listener,
            state.clone(),
            get_mode.clone(),
            lists_open.clone(),
            connections.clone(),
        ));
        FakeApi {
            addr,
            state,
            get_mode,
            lists_open,
            connections,
            accept,
        }
    }

    /// A real kube client pointed at this server.
    pub fn client(&self) -> kube::Client {
        let url: hyper::Uri = format!("http://{}", self.addr).parse().expect("url");
        kube::Client::try_from(kube::Config::new(url)).expect("client")
    }

    /// Until `open_lists(true)`, list requests wait instead of answering.
    pub fn open_lists(&self, open: bool) {
        self.lists_open.send_replace(open);
    }

    pub fn set_get_mode(&self, mode: GetMode) {
        *lock(&self.get_mode) = mode;
    }

    /// Creates or relabels a namespace and tells open watches (ADDED or MODIFIED).
    pub fn apply(&self, name: &str, labels: &[(&str, &str)]) {
        let mut state = lock(&self.state);
        let kind = if state.namespaces.contains_key(name) {
            "MODIFIED"
        } else {
            "ADDED"
        };
        let object = state.put(name, labels);
        state.publish(kind, object);
    }

    /// Deletes a namespace and tells open watches (DELETED).
    pub fn delete(&self, name: &str) {
        let mut state = lock(&self.state);
        let mut object = state.namespaces.remove(name).expect("namespace to delete");
        state.resource_version += 1;
        object["metadata"]["resourceVersion"] = json!(state.resource_version.to_string());
        state.publish("DELETED", object);
    }

    /// Creates or relabels a namespace without a watch event: one whose event is late.
    pub fn put_silently(&self, name: &str, labels: &[(&str, &str)]) {
        lock(&self.state).put(name, labels);
    }

    /// Deletes a namespace without a watch event: one whose event was lost.
    pub fn delete_silently(&self, name: &str) {
        lock(&self.state).namespaces.remove(name);
    }

    /// Ends every open watch cleanly, as the API server does when `timeoutSeconds` expires.
    pub fn end_watches(&self) {
        lock(&self.state).watches.clear();
    }

    /// Sends an ERROR event with `code` on every open watch (410: resourceVersion expired).
    pub fn watch_error(&self, code: u16) {
        let line = json!({"type": "ERROR", "object": status(code, "watch error from the fake")});
        let mut state = lock(&self.state);
        let line = format!("{line}\n");
        state
            .watches
            .retain(|watch| watch.unbounded_send(line.clone()).is_ok());
    }

    /// Drops every connection and closes each new one at once until [`Self::come_back`].
    pub fn go_down(&self) {
        let mut state = lock(&self.state);
        state.down = true;
        state.watches.clear();
        lock(&self.connections).abort_all();
    }

    pub fn come_back(&self) {
        lock(&self.state).down = false;
    }

    /// Connections refused while down.
    pub fn refused(&self) -> usize {
        lock(&self.state).refused
    }

    /// Watches whose client is still reading.
    pub fn open_watches(&self) -> usize {
        let mut state = lock(&self.state);
        state.watches.retain(|watch| !watch.is_closed());
        state.watches.len()
    }

    pub fn resource_version(&self) -> u64 {
        lock(&self.state).resource_version
    }

    pub fn requests(&self) -> Vec<Seen> {
        lock(&self.state).requests.clone()
    }

    pub fn lists(&self) -> Vec<Seen> {
        let lists = self.requests().into_iter();
        lists
            .filter(|r| r.path == NAMESPACES && !is_watch(&r.query))
            .collect()
    }

    pub fn watches(&self) -> Vec<Seen> {
        let watches = self.requests().into_iter();
        watches
            .filter(|r| r.path == NAMESPACES && is_watch(&r.query))
            .collect()
    }

    /// GETs of one namespace.
    pub fn gets(&self, name: &str) -> usize {
        let path = format!("{NAMESPACES}/{name}");
        self.requests().iter().filter(|r| r.path == path).count()
    }
}

const NAMESPACES: &str = "/api/v1/namespaces";

impl State {
    fn put(&mut self, name: &str, labels: &[(&str, &str)]) -> Value {
        self.resource_version += 1;
        let labels: BTreeMap<&str, &str> = labels.iter().copied().collect();
        let object = json!({
            "kind": "PartialObjectMetadata",
            "apiVersion": "meta.k8s.io/v1",
            "metadata": {
                "name": name,
                "uid": format!("uid-{name}"),
                "resourceVersion": self.resource_version.to_string(),
                "labels": labels,
            },
        });
        self.namespaces.insert(name.to_owned(), object.clone());
        object
    }

    fn publish(&mut self, kind: &str, object: Value) {
        let line = format!("{}\n", json!({"type": kind, "object": object}));
        self.history.push((self.resource_version, line.clone()));
        self.watches
            .retain(|watch| watch.unbounded_send(line.clone()).is_ok());
    }
}

async fn accept_loop(
    listener: TcpListener,
    state: Arc<Mutex<State>>,
    get_mode: Arc<Mutex<GetMode>>,
    lists_open: watch::Sender<bool>,
    connections: Arc<Mutex<JoinSet<()>>>,
) {
    while let Ok((stream, _)) = listener.accept().await {
        {
            let mut state = lock(&state);
            if state.down {
                state.refused += 1;
                continue; // dropping the stream closes the connection
            }
        }
        let (state, get_mode, lists_open) = (state.clone(), get_mode.clone(), lists_open.clone());
        let service = hyper::service::service_fn(move |request| {
            let (state, get_mode, lists_open) =
                (state.clone(), get_mode.clone(), lists_open.clone());
            async move { Ok::<_, Infallible>(handle(request, &state, &get_mode, &lists_open).await) }
        });
        lock(&connections).spawn(async move {
            let connection = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service);
            let _ = connection.await;
        });
    }
}

async fn handle(
    request: Request<Incoming>,
    state: &Mutex<State>,
    get_mode: &Mutex<GetMode>,
    lists_open: &watch::Sender<bool>,
) -> Response<Body> {
    let path = request.uri().path().to_owned();
    let query = request.uri().query().unwrap_or_default().to_owned();
    let accept = request.headers().get(hyper::header::ACCEPT);
    let accept = accept
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    lock(state).requests.push(Seen {
        path: path.clone(),
        query: query.clone(),
        accept,
    });

    if path == NAMESPACES && is_watch(&query) {
        let since: u64 = param(&query, "resourceVersion").parse().unwrap_or(0);
        let (sender, receiver) = mpsc::unbounded();
        let mut state = lock(state);
        for (_, line) in state.history.iter().filter(|(rv, _)| *rv > since) {
            sender
                .unbounded_send(line.clone())
                .expect("receiver is here");
        }
        state.watches.push(sender);
        let frames = receiver.map(|line| Ok(Frame::data(Bytes::from(line))));
        return Response::new(BodyExt::boxed(StreamBody::new(frames)));
    }
    if path == NAMESPACES {
        let _ = lists_open.subscribe().wait_for(|open| *open).await;
        let state = lock(state);
        let items: Vec<&Value> = state.namespaces.values().collect();
        return json_response(
            StatusCode::OK,
            &json!({
                "kind": "PartialObjectMetadataList",
                "apiVersion": "meta.k8s.io/v1",
                "metadata": {"resourceVersion": state.resource_version.to_string()},
                "items": items,
            }),
        );
    }
    if let Some(name) = path.strip_prefix(&format!("{NAMESPACES}/")) {
        let mode = *lock(get_mode);
        match mode {
            GetMode::Answer => {}
            GetMode::Fail => {
                return json_response(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    &status(500, "storage is failing"),
                );
            }
            GetMode::Hang => tokio::time::sleep(Duration::from_secs(30)).await,
        }
        return match lock(state).namespaces.get(name) {
            Some(object) => json_response(StatusCode::OK, object),
            None => json_response(
                StatusCode::NOT_FOUND,
                &status(404, &format!("namespaces \"{name}\" not found")),
            ),
        };
    }
    json_response(
        StatusCode::NOT_FOUND,
        &status(404, "the fake serves namespaces only"),
    )
}

fn status(code: u16, message: &str) -> Value {
    let reason = match code {
        404 => "NotFound",
        410 => "Expired",
        _ => "InternalError",
    };
    json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {},
        "status": "Failure", "message": message, "reason": reason, "code": code,
    })
}

fn json_response(code: StatusCode, body: &Value) -> Response<Body> {
    let mut response = Response::new(Full::new(Bytes::from(body.to_string())).boxed());
    *response.status_mut() = code;
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    response
}

fn is_watch(query: &str) -> bool {
    param(query, "watch") == "true"
}

pub fn param<'q>(query: &'q str, key: &str) -> &'q str {
    query
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find_map(|(k, v)| (k == key).then_some(v))
        .unwrap_or_default()
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

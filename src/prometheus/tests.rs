use super::answer::decode;
use super::*;

const URL: &str = "http://prometheus:9090";

fn decoded(status: u16, body: &str, had_token: bool) -> Result<Answer, Error> {
    decode(
        URL,
        StatusCode::from_u16(status).expect("status"),
        body.as_bytes(),
        had_token,
    )
}

#[test]
fn a_vector_answer_becomes_samples_and_leaves_out_values_that_are_not_numbers() {
    let body = r#"{"status":"success","data":{"resultType":"vector","result":[
        {"metric":{"namespace":"gitlab","pod":"runner-a"},"value":[1700000000,"1.073741824e+09"]},
        {"metric":{"pod":"runner-b"},"value":[1700000000,"NaN"]},
        {"metric":{"pod":"runner-c"},"value":[1700000000,"+Inf"]}
    ]},"warnings":["partial answer"]}"#;
    let answer = decoded(200, body, false).expect("an answer");
    assert_eq!(answer.samples.len(), 1);
    assert_eq!(answer.samples[0].value, 1_073_741_824.0);
    assert_eq!(answer.samples[0].label("namespace"), "gitlab");
    assert_eq!(answer.samples[0].label("class"), "");
    assert_eq!(answer.warnings, ["partial answer"]);
}

#[test]
fn a_refused_query_says_why_in_prometheus_words() {
    let body =
        r#"{"status":"error","errorType":"bad_data","error":"1:5: parse error: unexpected"}"#;
    let error = decoded(400, body, false).expect_err("refused");
    assert_eq!(
        error.to_string(),
        "Prometheus at http://prometheus:9090 refused the query (bad_data): 1:5: parse error: unexpected"
    );
}

#[test]
fn a_refused_token_and_a_missing_one_are_told_apart() {
    let with = decoded(401, "Unauthorized", true).expect_err("refused");
    assert!(
        with.to_string()
            .contains("the bearer token was not accepted"),
        "{with}"
    );
    let without = decoded(403, "", false).expect_err("refused");
    assert!(
        without.to_string().contains("pass --bearer-token-file"),
        "{without}"
    );
    assert!(without.to_string().contains("HTTP 403"), "{without}");
}

#[test]
fn an_html_page_is_not_taken_for_prometheus() {
    let error = decoded(404, "<html>\n  <body>Not Found</body></html>", false).expect_err("404");
    assert_eq!(
        error.to_string(),
        "http://prometheus:9090/api/v1/query answered HTTP 404 (<html> <body>Not Found</body></html>): \
         is this Prometheus' URL, with its path prefix?"
    );
}

#[test]
fn an_answer_that_is_not_a_vector_is_an_error() {
    let body = r#"{"status":"success","data":{"resultType":"scalar","result":[1,"2"]}}"#;
    assert!(matches!(
        decoded(200, body, false),
        Err(Error::BadAnswer { .. })
    ));
    assert!(matches!(
        decoded(200, "not json", false),
        Err(Error::BadAnswer { .. })
    ));
}

#[tokio::test]
async fn urls_must_be_http_or_https_with_a_host_and_may_have_a_path_prefix() {
    let config = |url: &str| Config {
        url: url.to_string(),
        bearer_token: None,
        ca_file: None,
        timeout: Duration::from_secs(5),
    };
    for bad in [
        "prometheus:9090",
        "ftp://prometheus",
        "http://",
        "http://p:9090/?x=1",
    ] {
        let error = Prometheus::new(&config(bad)).expect_err(bad);
        assert!(matches!(error, Error::BadUrl { .. }), "{bad}: {error}");
    }
    let client = Prometheus::new(&config("http://monitoring.example/prometheus/")).expect("ok");
    assert_eq!(client.url(), "http://monitoring.example/prometheus");
    assert_eq!(
        client.query_uri.to_string(),
        "http://monitoring.example/prometheus/api/v1/query"
    );
}

#[tokio::test]
async fn a_missing_ca_file_fails_before_any_query() {
    let config = Config {
        url: "https://prometheus:9090".to_string(),
        bearer_token: None,
        ca_file: Some(PathBuf::from("/nonexistent/ca.crt")),
        timeout: Duration::from_secs(5),
    };
    let error = Prometheus::new(&config).expect_err("no file");
    assert!(
        error
            .to_string()
            .starts_with("cannot read --ca-file /nonexistent/ca.crt: "),
        "{error}"
    );
}

#[tokio::test]
async fn a_closed_port_is_unreachable_in_one_line() {
    // Bind and drop: nothing listens there any more.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let client = Prometheus::new(&Config {
        url: format!("http://127.0.0.1:{port}"),
        bearer_token: None,
        ca_file: None,
        timeout: Duration::from_secs(5),
    })
    .expect("client");
    let error = client.query("up", 0).await.expect_err("nothing listens");
    let message = error.to_string();
    assert!(
        message.starts_with(&format!(
            "cannot reach Prometheus at http://127.0.0.1:{port}: "
        )),
        "{message}"
    );
    assert!(message.contains("refused"), "{message}");
    assert!(!message.contains('\n'), "{message}");
}

#[test]
fn label_values_become_exact_regular_expressions_and_string_literals() {
    assert_eq!(
        exact_alternation(["gitlab", "ci.x", "a|b"]),
        r"gitlab|ci\.x|a\|b"
    );
    assert_eq!(string_literal(r#"say "hi"\n"#), r#""say \"hi\"\\n""#);
}

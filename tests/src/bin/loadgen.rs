//! A small closed-loop HTTPS load generator for the benchmarks: N keep-alive connections
//! (one client each, optionally presenting a client certificate), each sending its next
//! request as soon as the previous answer arrived, for a fixed duration.
//!
//! `loadgen --url URL --ca CA.pem [--cert C.pem --key K.pem] [--connections 64]
//!  [--seconds 10] [--body JSON]` prints one JSON line: requests, errors, rps, latency
//! percentiles in microseconds.

use std::time::{Duration, Instant};

use anyhow::{bail, Context};

struct Args {
    url: String,
    ca: String,
    cert: Option<String>,
    key: Option<String>,
    connections: usize,
    seconds: u64,
    body: Option<String>,
}

fn parse_args() -> anyhow::Result<Args> {
    let mut a = Args {
        url: String::new(),
        ca: String::new(),
        cert: None,
        key: None,
        connections: 64,
        seconds: 10,
        body: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().with_context(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--url" => a.url = value()?,
            "--ca" => a.ca = value()?,
            "--cert" => a.cert = Some(value()?),
            "--key" => a.key = Some(value()?),
            "--connections" => a.connections = value()?.parse().context("--connections")?,
            "--seconds" => a.seconds = value()?.parse().context("--seconds")?,
            "--body" => a.body = Some(value()?),
            other => bail!("unknown argument {other}: see the comment at the top of loadgen.rs"),
        }
    }
    if a.url.is_empty() || a.ca.is_empty() {
        bail!("--url and --ca are required");
    }
    if a.connections == 0 || a.seconds == 0 || a.seconds > 600 {
        bail!("--connections must be > 0 and --seconds in 1..=600");
    }
    Ok(a)
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    rustls::crypto::ring::default_provider()
        .install_default()
        .ok();
    let args = parse_args()?;
    let ca = std::fs::read(&args.ca).context("reading --ca")?;
    let identity = match (&args.cert, &args.key) {
        (Some(c), Some(k)) => Some((std::fs::read(c)?, std::fs::read(k)?)),
        (None, None) => None,
        _ => bail!("--cert and --key go together"),
    };
    let deadline = Instant::now() + Duration::from_secs(args.seconds);
    let mut tasks = Vec::new();
    for _ in 0..args.connections {
        let tls = tests::tls_config(&ca, identity.as_ref().map(|(c, k)| (&c[..], &k[..])))?;
        let client = reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .pool_max_idle_per_host(1)
            .timeout(Duration::from_secs(30))
            .build()?;
        let url = args.url.clone();
        let body = args.body.clone();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut errors = 0u64;
            while Instant::now() < deadline {
                let t = Instant::now();
                let req = match &body {
                    Some(b) => client
                        .post(&url)
                        .header("content-type", "application/json")
                        .body(b.clone()),
                    None => client.get(&url),
                };
                match req.send().await {
                    Ok(r) if r.status().is_success() => match r.bytes().await {
                        Ok(_) => lat.push(t.elapsed().as_micros() as u64),
                        Err(_) => errors += 1,
                    },
                    _ => errors += 1,
                }
            }
            (lat, errors)
        }));
    }
    let mut all = Vec::new();
    let mut errors = 0;
    for t in tasks {
        let (lat, e) = t.await?;
        all.extend(lat);
        errors += e;
    }
    all.sort_unstable();
    let secs = args.seconds as f64;
    println!(
        "{}",
        serde_json::json!({
            "url": args.url,
            "connections": args.connections,
            "seconds": args.seconds,
            "requests": all.len(),
            "errors": errors,
            "rps": (all.len() as f64 / secs).round(),
            "p50_us": percentile(&all, 0.50),
            "p99_us": percentile(&all, 0.99),
            "max_us": all.last().copied().unwrap_or(0),
        })
    );
    Ok(())
}

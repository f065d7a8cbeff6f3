//! Downloads from the web, for the images of Gitter messages ([`Fetcher`]).
//!
//! The URL comes from a message anyone on Gitter can write, so the download is made as if
//! by a stranger's hand:
//!
//! * `http` and `https` only, and at most [`MAX_REDIRECTS`] redirects, each to `http(s)`;
//! * no private, loopback, link-local or otherwise non-public address unless the operator
//!   allows them (`gitter.media_allow_private_addresses`, which the tests need): checked on
//!   every address a name resolves to, in the resolver the connection itself uses, so a name
//!   that resolves to a public address for a check and a private one for the connection
//!   (DNS rebinding) gets nowhere; an address written in the URL is checked before;
//! * a time limit on the whole download and a size cap, by `Content-Length` at once and
//!   while reading.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use reqwest::header;
use url::Url;

/// Most redirects followed.
pub const MAX_REDIRECTS: usize = 3;

/// What a download may do.
#[derive(Clone, Debug)]
pub struct FetchConfig {
    /// Largest file downloaded, bytes.
    pub max_bytes: u64,
    /// Longest time of a whole download.
    pub time_limit: Duration,
    /// Private and loopback addresses may be reached.
    pub allow_private: bool,
}

/// Why a download failed: always the web server's or the URL's fault, never worth a retry
/// by the core (the message's link stands in for the file).
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// The URL is not one the bridge downloads.
    #[error("not downloaded: {0}")]
    Refused(String),
    /// The server answered with an error status.
    #[error("the server answered HTTP {0}")]
    Status(u16),
    /// Larger than the cap.
    #[error("larger than {0} bytes")]
    TooLarge(u64),
    /// The connection or the transfer failed.
    #[error("the download failed: {0}")]
    Network(String),
    /// The download took longer than its time limit (not tried again: a server that
    /// trickles would hold the portal's messages for as many limits).
    #[error("the download took longer than its time limit")]
    TimedOut,
}

/// Tries after the first of a download that failed for a reason that can pass.
pub const RETRIES: usize = 2;

impl FetchError {
    /// Whether trying again may help.
    fn can_pass(&self) -> bool {
        match self {
            FetchError::Network(_) => true,
            FetchError::Status(status) => *status == 429 || *status >= 500,
            FetchError::Refused(_) | FetchError::TooLarge(_) | FetchError::TimedOut => false,
        }
    }
}

/// Downloads files from the web within [`FetchConfig`]. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Fetcher {
    http: reqwest::Client,
    config: FetchConfig,
    /// Downloads at once, in all: each holds up to `max_bytes` in memory.
    running: Arc<tokio::sync::Semaphore>,
}

/// Most downloads at once.
pub const MAX_DOWNLOADS: usize = 4;

impl Fetcher {
    /// A fetcher for `config`.
    pub fn new(config: FetchConfig) -> Result<Fetcher, FetchError> {
        let allow_private = config.allow_private;
        let redirects = reqwest::redirect::Policy::custom(move |attempt| {
            // `previous` holds the URLs before this one, the first request's included.
            if attempt.previous().len() > MAX_REDIRECTS {
                return attempt.error(format!("more than {MAX_REDIRECTS} redirects"));
            }
            match check_url(attempt.url(), allow_private) {
                Ok(()) => attempt.follow(),
                Err(why) => attempt.error(why),
            }
        });
        let http = reqwest::Client::builder()
            .timeout(config.time_limit)
            .connect_timeout(Duration::from_secs(10))
            .redirect(redirects)
            // A proxy would resolve the name itself, past the resolver's check.
            .no_proxy()
            .dns_resolver(Arc::new(PublicResolver { allow_private }))
            .user_agent(concat!("gitter-bridge/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| FetchError::Network(format!("cannot build the HTTP client: {e}")))?;
        Ok(Fetcher {
            http,
            config,
            running: Arc::new(tokio::sync::Semaphore::new(MAX_DOWNLOADS)),
        })
    }

    /// Downloads `url`: its bytes and content type. A failure that can pass (the network, a
    /// time-out, a 5xx or 429) is tried [`RETRIES`] more times, a second and then two apart;
    /// after that the message's link stands in (a web server that keeps failing must not
    /// hold a portal's messages).
    pub async fn fetch(&self, url: &str) -> Result<(Bytes, String), FetchError> {
        use backon::{ExponentialBuilder, Retryable};
        let parsed = Url::parse(url).map_err(|e| FetchError::Refused(format!("{url}: {e}")))?;
        check_url(&parsed, self.config.allow_private).map_err(FetchError::Refused)?;
        let backoff = ExponentialBuilder::default()
            .with_min_delay(Duration::from_secs(1))
            .with_max_times(RETRIES);
        (|| self.fetch_once(parsed.clone()))
            .retry(backoff)
            .sleep(tokio::time::sleep)
            .when(FetchError::can_pass)
            .await
    }

    async fn fetch_once(&self, parsed: Url) -> Result<(Bytes, String), FetchError> {
        let _turn = self
            .running
            .acquire()
            .await
            .map_err(|_| FetchError::Network("the fetcher is closed".to_owned()))?;
        let network = |e: reqwest::Error| {
            // A redirect the policy refused is the URL's fault, not the network's.
            if e.is_redirect() {
                FetchError::Refused(e.without_url().to_string())
            } else if e.is_timeout() {
                FetchError::TimedOut
            } else {
                FetchError::Network(e.without_url().to_string())
            }
        };
        let mut response = self.http.get(parsed).send().await.map_err(network)?;
        let status = response.status();
        if !status.is_success() {
            return Err(FetchError::Status(status.as_u16()));
        }
        let max = self.config.max_bytes;
        if response.content_length().is_some_and(|n| n > max) {
            return Err(FetchError::TooLarge(max));
        }
        let content_type = response
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("application/octet-stream")
            .to_owned();
        let mut bytes = BytesMut::new();
        while let Some(chunk) = response.chunk().await.map_err(network)? {
            if bytes.len() as u64 + chunk.len() as u64 > max {
                return Err(FetchError::TooLarge(max));
            }
            bytes.extend_from_slice(&chunk);
        }
        Ok((bytes.freeze(), content_type))
    }
}

/// Whether the bridge downloads from `url`: `http(s)`, and not a non-public address written
/// as such (names are checked when they resolve, [`PublicResolver`]).
fn check_url(url: &Url, allow_private: bool) -> Result<(), String> {
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!("scheme {} (only http and https)", url.scheme()));
    }
    let ip = match url.host() {
        Some(url::Host::Ipv4(ip)) => IpAddr::V4(ip),
        Some(url::Host::Ipv6(ip)) => IpAddr::V6(ip),
        Some(url::Host::Domain(_)) => return Ok(()),
        None => return Err("no host".to_owned()),
    };
    if allow_private || is_public(ip) {
        Ok(())
    } else {
        Err(format!("{ip} is not a public address"))
    }
}

/// Resolves names with the system resolver and keeps only public addresses.
struct PublicResolver {
    allow_private: bool,
}

impl Resolve for PublicResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let allow_private = self.allow_private;
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let found: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0))
                .await?
                .filter(|a| allow_private || is_public(a.ip()))
                .collect();
            if found.is_empty() {
                return Err(format!("{host} has no public address").into());
            }
            let addrs: Addrs = Box::new(found.into_iter());
            Ok(addrs)
        })
    }
}

/// Whether an address is on the public internet (not loopback, private, link-local,
/// shared, documentation, multicast, reserved or unspecified; RFC 6890's special-purpose
/// registries). An IPv4-mapped IPv6 address counts as its IPv4 address.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => is_public_v4(v4),
            None => is_public_v6(v6),
        },
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, ..] = ip.octets();
    !(ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_broadcast()
        || ip.is_documentation()
        || ip.is_multicast()
        || a == 0
        || a >= 240
        // 100.64.0.0/10, shared address space (carrier-grade NAT).
        || (a == 100 && (64..128).contains(&b))
        // 192.0.0.0/24, IETF protocol assignments; 198.18.0.0/15, benchmarking.
        || (a == 192 && b == 0 && ip.octets()[2] == 0)
        || (a == 198 && (b == 18 || b == 19)))
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    let seg = ip.segments();
    let first = seg[0];
    let embedded = |hi: u16, lo: u16| Ipv4Addr::from((u32::from(hi) << 16) | u32::from(lo));
    // Addresses that carry an IPv4 address reach it: NAT64 (64:ff9b::/96), 6to4 (2002::/16)
    // and the deprecated IPv4-compatible form (::a.b.c.d).
    if seg[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        return is_public_v4(embedded(seg[6], seg[7]));
    }
    if first == 0x2002 {
        return is_public_v4(embedded(seg[1], seg[2]));
    }
    if seg[..6] == [0; 6] {
        return false;
    }
    !(ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_multicast()
        // fc00::/7 unique local, fe80::/10 link-local, fec0::/10 site-local.
        || (first & 0xfe00) == 0xfc00
        || (first & 0xffc0) == 0xfe80
        || (first & 0xffc0) == 0xfec0
        // 2001:db8::/32 documentation.
        || (first == 0x2001 && ip.segments()[1] == 0x0db8))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_public_addresses_count_as_public() {
        for private in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "255.255.255.255",
            "::1",
            "::",
            "fd00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "64:ff9b::a9fe:a9fe",
            "2002:7f00:1::1",
            "::10.0.0.1",
            "fec0::1",
        ] {
            assert!(!is_public(private.parse().unwrap()), "{private}");
        }
        for public in [
            "93.184.216.34",
            "1.1.1.1",
            "2606:4700::1111",
            "::ffff:8.8.8.8",
        ] {
            assert!(is_public(public.parse().unwrap()), "{public}");
        }
    }

    #[test]
    fn only_http_urls_to_public_addresses_are_fetched() {
        let check = |u: &str, allow: bool| check_url(&Url::parse(u).unwrap(), allow);
        assert!(check("https://example.org/a.png", false).is_ok());
        assert!(check("http://93.184.216.34/a.png", false).is_ok());
        assert!(check("file:///etc/passwd", true).is_err());
        assert!(check("ftp://example.org/a.png", false).is_err());
        assert!(check("http://127.0.0.1:8008/_matrix", false).is_err());
        assert!(check("http://[::1]/", false).is_err());
        assert!(check("http://169.254.169.254/latest/meta-data", false).is_err());
        assert!(check("http://127.0.0.1:8008/x", true).is_ok());
    }
}

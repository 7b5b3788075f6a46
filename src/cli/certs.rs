//! `ci-pod-webhook certs`: a CA and a serving certificate for the webhook's Service
//! (the certificates themselves are made by [`crate::certs`]).

use std::io::Write;
use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use crate::certs::{self, ServiceCertificate};

/// `ci-pod-webhook certs`: a CA and a serving certificate for a Service.
#[derive(Debug, Clone, clap::Args)]
pub struct CertsArgs {
    /// Name of the webhook's Service.
    #[arg(long, value_name = "NAME", default_value = "ci-pod-webhook")]
    pub service: String,
    /// Namespace of the webhook's Service.
    #[arg(long, value_name = "NAMESPACE", default_value = "ci-pod-webhook")]
    pub namespace: String,
    /// Directory for ca.crt, ca.key, tls.crt, tls.key and ca-bundle.b64.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Validity of both certificates, in days.
    #[arg(long, value_name = "DAYS", default_value_t = 365)]
    pub days: u32,
    /// Also name this IP address in the serving certificate (repeatable), e.g. the
    /// host address a kind or minikube cluster reaches a local `serve` on.
    #[arg(long = "ip", value_name = "IP")]
    pub ips: Vec<IpAddr>,
    /// Also name this DNS name in the serving certificate (repeatable), e.g.
    /// host.minikube.internal.
    #[arg(long = "dns", value_name = "NAME", value_parser = parse_dns_name)]
    pub dns_names: Vec<String>,
    /// Also name every DNS name and IP address the certificate in this PEM file names
    /// (the `tls.crt` a rotation replaces), so the new one keeps the install's --ip and
    /// --dns.
    #[arg(long, value_name = "TLS_CRT")]
    pub names_from: Option<PathBuf>,
    /// Replace certificates already in --out (any of the five files).
    #[arg(long)]
    pub force: bool,
}

pub fn run(args: &CertsArgs, out: &mut impl Write) -> anyhow::Result<ExitCode> {
    let (mut dns_names, mut ips) = (args.dns_names.clone(), args.ips.clone());
    if let Some(path) = &args.names_from {
        let (dns, addresses) = certs::names_in(path)?;
        dns_names.extend(dns);
        ips.extend(addresses);
    }
    let cert = ServiceCertificate {
        service: &args.service,
        namespace: &args.namespace,
        days: args.days,
        ips: &ips,
        dns_names: &dns_names,
    };
    for path in certs::run(&cert, &args.out, args.force)? {
        writeln!(out, "wrote {}", path.display())?;
    }
    writeln!(
        out,
        "caBundle for the MutatingWebhookConfiguration: the one line in {}",
        args.out.join(certs::CA_BUNDLE).display()
    )?;
    Ok(ExitCode::SUCCESS)
}

fn parse_dns_name(s: &str) -> Result<String, String> {
    if ci_pod_webhook_core::policy::is_dns_subdomain(s) {
        Ok(s.to_string())
    } else {
        Err(format!(
            "{s:?} is not a DNS name (lower-case labels of letters, digits and '-', separated by dots, like host.minikube.internal); for an IP address use --ip"
        ))
    }
}

#[cfg(test)]
mod tests;

//! `policyctl generate`: the generated snapshot (`tenantgate_policy::generate`) on stdout.

use super::{fail, Flags};
use std::io::Write;
use std::process::ExitCode;
use tenantgate_policy::generate::generate;

pub(super) fn run(args: &[String]) -> ExitCode {
    let parsed = (|| -> Result<(usize, usize, u64), String> {
        let flags = Flags::parse(args, &["--orgs", "--keys", "--seed"])?;
        let number = |name: &str| -> Result<u64, String> {
            let text = flags.required(name)?;
            text.parse::<u64>()
                .map_err(|_| format!("`{name}`: not a whole number `{text}`"))
        };
        let orgs = usize::try_from(number("--orgs")?).map_err(|e| e.to_string())?;
        let keys = usize::try_from(number("--keys")?).map_err(|e| e.to_string())?;
        let seed = match flags.get("--seed") {
            Some(s) => s
                .parse::<u64>()
                .map_err(|_| format!("`--seed`: not a whole number `{s}`"))?,
            None => 1,
        };
        if orgs == 0 {
            return Err("`--orgs` must be at least 1".into());
        }
        Ok((orgs, keys, seed))
    })();
    let (orgs, keys, seed) = match parsed {
        Ok(p) => p,
        Err(message) => return fail(message),
    };
    let document = generate(orgs, keys, seed);
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    if serde_json::to_writer(&mut out, &document).is_err()
        || writeln!(out).is_err()
        || out.flush().is_err()
    {
        return fail("cannot write to stdout");
    }
    ExitCode::SUCCESS
}

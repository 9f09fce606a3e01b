//! `loadgen`'s command line.

use anyhow::{Context, bail};

/// What one run does.
#[derive(Clone, Debug)]
pub(crate) struct Args {
    pub(crate) duration_s: f64,
    pub(crate) payload: usize,
    pub(crate) groups: u64,
    pub(crate) clients: usize,
    pub(crate) window: usize,
    pub(crate) batch: usize,
    pub(crate) read_ratio: f64,
    /// Total proposals per second the clients pace themselves to (`None`: as fast as the
    /// window allows).
    pub(crate) rate: Option<f64>,
    /// Instead of a load run: create this many groups per node, let them quiesce, and
    /// report the memory each costs.
    pub(crate) idle_groups: Option<u64>,
    /// Groups snapshot their state machine every this many applied entries (0: never).
    pub(crate) snapshot_every: u64,
    pub(crate) json: Option<String>,
}

pub(crate) fn parse_args() -> anyhow::Result<Args> {
    let mut args = Args {
        duration_s: 10.0,
        payload: 16,
        groups: 64,
        clients: 4,
        window: 256,
        batch: 32,
        read_ratio: 0.0,
        rate: None,
        idle_groups: None,
        snapshot_every: flotilla::SNAPSHOT_EVERY_ENTRIES_DEFAULT,
        json: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().with_context(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--duration" => args.duration_s = value()?.parse().context("--duration")?,
            "--payload" => args.payload = value()?.parse().context("--payload")?,
            "--groups" => args.groups = value()?.parse().context("--groups")?,
            "--clients" => args.clients = value()?.parse().context("--clients")?,
            "--window" => args.window = value()?.parse().context("--window")?,
            "--batch" => args.batch = value()?.parse().context("--batch")?,
            "--read-ratio" => args.read_ratio = value()?.parse().context("--read-ratio")?,
            "--rate" => args.rate = Some(value()?.parse().context("--rate")?),
            "--idle-groups" => args.idle_groups = Some(value()?.parse().context("--idle-groups")?),
            "--snapshot-every" => {
                args.snapshot_every = value()?.parse().context("--snapshot-every")?;
            }
            "--json" => args.json = Some(value()?),
            other => bail!("unknown flag {other} (see the usage in the file's docs)"),
        }
    }
    if args.duration_s.is_nan()
        || args.duration_s <= 0.0
        || args.groups == 0
        || args.clients == 0
        || args.window == 0
        || args.batch == 0
    {
        bail!("--duration, --groups, --clients, --window and --batch must be positive");
    }
    if !(0.0..=1.0).contains(&args.read_ratio) {
        bail!("--read-ratio must be between 0 and 1");
    }
    if args.rate.is_some_and(|rate| rate.is_nan() || rate <= 0.0) {
        bail!("--rate must be positive");
    }
    if args.idle_groups == Some(0) {
        bail!("--idle-groups must be positive");
    }
    Ok(args)
}

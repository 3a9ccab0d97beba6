//! `ponder devices`: what llama.cpp can run layers on.

use crate::flags::no_gpu_reason;
use crate::render;

#[derive(clap::Args)]
pub struct Args {
    /// Print the list as JSON.
    #[arg(long)]
    json: bool,
}

/// Lists the devices llama.cpp found.
pub fn exec(args: &Args) -> ponder::Result<()> {
    let devices = ponder::devices()?;
    render::devices(&devices, no_gpu_reason(), args.json);
    Ok(())
}

//! One module per `hnroot` subcommand (or group of subcommands): each parses its arguments,
//! observes through `hnroot-linux`, asks the core and carries out what it returns. What several
//! commands share lives beside this directory: `locate` (hostpart, the ESP, the boot state and
//! the running system's command line), `source` (where an image comes from), `out` and
//! `progress` (what the operator sees).

pub mod bootloader;
pub mod bootstate;
pub mod find;
pub mod health;
pub mod history;
pub mod host;
pub mod image;
pub mod install;
pub mod mark_good;
pub mod metrics;
pub mod probe;
pub mod publish;
pub mod reboot;
pub mod revert;
pub mod stage;
pub mod status;
pub mod sysprep;

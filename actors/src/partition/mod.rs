//! One partition: its on-disk log.

pub mod log;
mod index;
mod segment;

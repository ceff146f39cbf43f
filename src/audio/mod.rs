//! Audio front-end: the SyncTalk_2D mel spectrogram and the encoder and per-frame feature windows.

pub mod features;
pub mod mel;
pub mod samples;
pub mod stream;

pub mod bench;
pub mod devices;
pub mod grad;
pub mod parity;
pub mod sample;
pub mod train;
pub mod vanishing;

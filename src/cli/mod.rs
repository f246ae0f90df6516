pub mod grad;
pub mod sample;
pub mod train;

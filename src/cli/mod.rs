pub mod grad;
pub mod train;

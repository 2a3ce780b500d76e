"""The mock grid: a subset OpenADR 3.1 VTN that signs every program and event it publishes."""

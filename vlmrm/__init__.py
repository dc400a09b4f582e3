"""vlmrm: vision-language reward models."""

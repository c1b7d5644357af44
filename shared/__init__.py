"""What the extractor and the applier share: envelope, config, errors, retry, logging."""

"""Operations declared in tether.toml: run them, stage their inputs, expand batches."""

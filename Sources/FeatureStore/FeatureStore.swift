// Redis feature store: batch streams, dictionaries, progress, dead letters.

// Featurize worker: Kafka partitions → parsed, encoded batches → feature store.

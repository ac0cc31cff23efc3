// Every metric StreamRec exposes, in one place: name, type, labels, help and (histograms) buckets.
//
// The processes create their metrics through swift-metrics by these names (so the Prometheus
// factory behind it gets the buckets from here), `MetricsRegistry.render` adds the help lines the
// swift-metrics API has no room for, and the tests check that the Grafana dashboard
// (cluster/grafana-dashboard.json) names nothing that is not here and that each process exposes
// its part. Names follow Prometheus conventions: `streamrec_<component>_`, `_total` for counters,
// base units (`_seconds`).

/// One metric family.
public struct MetricDefinition: Sendable, Hashable {
    public enum Kind: String, Sendable { case counter, gauge, histogram }
    public enum Component: String, Sendable, CaseIterable { case featurize, trainer, serve }
    public let name: String
    public let kind: Kind
    public let component: Component
    public let labels: [String]
    public let help: String
    /// Upper bounds of a histogram's buckets (seconds for `_seconds` histograms).
    public let buckets: [Double]?

    init(_ name: String, _ kind: Kind, _ component: Component, labels: [String] = [], buckets: [Double]? = nil, _ help: String) {
        self.name = name; self.kind = kind; self.component = component; self.labels = labels; self.help = help; self.buckets = buckets
    }

    /// The series names a scrape shows for this family (a histogram's `_bucket`, `_sum`, `_count`).
    public var seriesNames: [String] {
        kind == .histogram ? [name + "_bucket", name + "_sum", name + "_count"] : [name]
    }
}

/// Bucket sets shared by several histograms.
public enum MetricBuckets {
    /// Redis commits, checkpoint stalls: sub-millisecond to seconds.
    public static let fast: [Double] = [0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5]
    /// HTTP request latency (the hand-written exporter's buckets, kept).
    public static let requests: [Double] = [0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5]
    /// Checkpoint writes and model loads: tens of milliseconds to a minute.
    public static let slow: [Double] = [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60]
    /// Event → trained / served freshness: 100 ms to 10 minutes.
    public static let freshness: [Double] = [0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600]
}

/// The catalogue. Code refers to a family as `Metric.featurizeRows.name`.
public enum Metric {
    // MARK: featurize (each worker process)
    public static let featurizeMessages = MetricDefinition("streamrec_featurize_messages_total", .counter, .featurize,
        "Kafka messages (rows or events) consumed.")
    public static let featurizeRows = MetricDefinition("streamrec_featurize_rows_total", .counter, .featurize,
        "Valid rows (or transitions) committed to the feature store.")
    public static let featurizeBatches = MetricDefinition("streamrec_featurize_batches_total", .counter, .featurize,
        "Feature batches committed (one Lua script each, with the partition's progress).")
    public static let featurizeDeadLetters = MetricDefinition("streamrec_featurize_dead_letters_total", .counter, .featurize,
        labels: ["reason"], "Rows refused and committed to the dead-letter stream, by reason (RejectReason).")
    public static let featurizeLostUpstream = MetricDefinition("streamrec_featurize_lost_upstream_total", .counter, .featurize,
        "Offsets deleted by Kafka retention before any worker read them (retention gaps).")
    public static let featurizeDuplicateUnits = MetricDefinition("streamrec_featurize_duplicate_units_total", .counter, .featurize,
        "Units found already committed (a retried commit that had reached Redis): skipped.")
    public static let featurizeFencedUnits = MetricDefinition("streamrec_featurize_fenced_units_total", .counter, .featurize,
        "Units refused by their lease's fencing token (the lease was lost): not written.")
    public static let featurizeOffsetResets = MetricDefinition("streamrec_featurize_offset_resets_total", .counter, .featurize,
        "Partitions whose progress was moved back to the broker's earliest offset (--on-offset-reset restart-from-earliest).")
    public static let featurizePartitionLag = MetricDefinition("streamrec_featurize_partition_lag", .gauge, .featurize,
        labels: ["partition"], "Offsets between the broker's high watermark (as librdkafka last learnt it) and the next offset this worker reads, per owned partition.")
    public static let featurizeCommitDuration = MetricDefinition("streamrec_featurize_commit_duration_seconds", .histogram, .featurize,
        buckets: MetricBuckets.fast, "Time of one unit's commit script in Redis (retries during an outage included).")
    public static let featurizeRedisOutages = MetricDefinition("streamrec_featurize_redis_outages_total", .counter, .featurize,
        "Redis outages (from the first failed call to the first answer again).")
    public static let featurizeKafkaOutages = MetricDefinition("streamrec_featurize_kafka_outages_total", .counter, .featurize,
        "Kafka outages (from the first client error or unanswered query to the broker's next answer).")
    public static let featurizeRedisUp = MetricDefinition("streamrec_featurize_redis_up", .gauge, .featurize,
        "1 while Redis answers, 0 during an outage.")
    public static let featurizeKafkaUp = MetricDefinition("streamrec_featurize_kafka_up", .gauge, .featurize,
        "1 while the broker answers, 0 during an outage.")
    public static let featurizeLeasesHeld = MetricDefinition("streamrec_featurize_leases_held", .gauge, .featurize,
        "Partitions this worker holds by lease (owns).")
    public static let featurizeLeasesLost = MetricDefinition("streamrec_featurize_leases_lost_total", .counter, .featurize,
        "Leases lost (expired or taken while this worker did not renew).")
    public static let featurizePaused = MetricDefinition("streamrec_featurize_paused", .gauge, .featurize,
        "1 while paused by back-pressure (a feature stream holds --max-pending untrained batches).")

    // MARK: trainer (rank 0)
    public static let trainerStep = MetricDefinition("streamrec_trainer_step", .gauge, .trainer,
        "Optimizer steps applied (the model's step, identical on every rank).")
    public static let trainerSamples = MetricDefinition("streamrec_trainer_samples_total", .counter, .trainer,
        "Samples (rows or transitions) trained by the job since this process started.")
    public static let trainerLoss = MetricDefinition("streamrec_trainer_loss", .gauge, .trainer,
        labels: ["term"], "The last step's loss terms (TrainableModel.metrics keys ending in _loss: wide_loss, deep_loss, policy_loss, …).")
    public static let trainerProgressive = MetricDefinition("streamrec_trainer_progressive", .gauge, .trainer,
        labels: ["metric"], "Progressive validation (each batch scored before it is trained on): pv_auc, pv_logloss, pv_ndcg@10, ….")
    public static let trainerStepSeconds = MetricDefinition("streamrec_trainer_step_seconds_total", .counter, .trainer,
        labels: ["phase"], "Where the training thread's time went: compute, communication (allreduce, allgatherv, step agreement), data_wait (polling for batches, idle).")
    public static let trainerStepDuration = MetricDefinition("streamrec_trainer_step_duration_seconds", .histogram, .trainer,
        buckets: MetricBuckets.fast, "One applied step: compute and communication.")
    public static let trainerCheckpointStall = MetricDefinition("streamrec_trainer_checkpoint_stall_seconds", .histogram, .trainer,
        buckets: MetricBuckets.fast, "Training held up per checkpoint (the in-memory snapshot; the write is in the background).")
    public static let trainerCheckpointWrite = MetricDefinition("streamrec_trainer_checkpoint_write_seconds", .histogram, .trainer,
        buckets: MetricBuckets.slow, "Background write of one checkpoint version.")
    public static let trainerCheckpoints = MetricDefinition("streamrec_trainer_checkpoints_total", .counter, .trainer,
        "Checkpoint versions written.")
    public static let trainerLastCheckpointStep = MetricDefinition("streamrec_trainer_last_checkpoint_step", .gauge, .trainer,
        "Step of the newest checkpoint version written.")
    public static let trainerRanks = MetricDefinition("streamrec_trainer_ranks", .gauge, .trainer,
        "Ranks (participants) in the job.")
    public static let trainerFreshness = MetricDefinition("streamrec_trainer_freshness_seconds", .histogram, .trainer,
        buckets: MetricBuckets.freshness, "Event produced (a batch's oldest event) → trained, per trained batch (online training).")

    // MARK: serve
    public static let serveRequests = MetricDefinition("streamrec_serve_requests_total", .counter, .serve,
        labels: ["endpoint", "status"], "HTTP requests answered, by endpoint and status code.")
    public static let serveRequestDuration = MetricDefinition("streamrec_serve_request_duration_seconds", .histogram, .serve,
        labels: ["endpoint"], buckets: MetricBuckets.requests, "Time from request received to response ready.")
    public static let serveRowsPredicted = MetricDefinition("streamrec_serve_rows_predicted_total", .counter, .serve,
        "Rows scored by /v1/predict.")
    public static let serveRecommendations = MetricDefinition("streamrec_serve_recommendations_total", .counter, .serve,
        labels: ["source"], "Users answered by /v1/recommend, by source (model: the served version's scores; popular: the real-time popular items).")
    public static let serveReloads = MetricDefinition("streamrec_serve_reloads_total", .counter, .serve,
        "Model versions loaded and swapped in (the first load counts).")
    public static let serveRejectedCheckpoints = MetricDefinition("streamrec_serve_rejected_checkpoints_total", .counter, .serve,
        labels: ["reason"], "Checkpoint versions refused, by reason: invalid_checkpoint, invalid_latest (LATEST is not a version name), outside_root, kind_changed.")
    public static let serveTimedOutConnections = MetricDefinition("streamrec_serve_timed_out_connections_total", .counter, .serve,
        labels: ["phase"], "Connections closed because a request head (header) or body (body) did not arrive in time.")
    public static let serveModelLoaded = MetricDefinition("streamrec_serve_model_loaded", .gauge, .serve,
        "1 once a model is serving.")
    public static let serveModelStep = MetricDefinition("streamrec_serve_model_step", .gauge, .serve,
        "Training step of the model version being served (-1 before the first).")
    public static let serveModelInfo = MetricDefinition("streamrec_serve_model_info", .gauge, .serve,
        labels: ["version", "kind"], "The model version and kind (manifest model_kind) being served (value is always 1).")
    public static let serveModelLoadSeconds = MetricDefinition("streamrec_serve_model_load_seconds", .gauge, .serve,
        "Time the last successful load took (verify, load, warm-up).")
    public static let serveModelNewestEvent = MetricDefinition("streamrec_serve_model_newest_event_timestamp_seconds", .gauge, .serve,
        "When the newest batch trained into the served version was produced (its oldest event; Unix time; 0 if the manifest does not say).")
    public static let serveFreshness = MetricDefinition("streamrec_serve_freshness_seconds", .histogram, .serve,
        buckets: MetricBuckets.freshness, "Event produced → served: at each load, now minus the manifest's newest_event_produced_ms.")

    public static let all: [MetricDefinition] = [
        featurizeMessages, featurizeRows, featurizeBatches, featurizeDeadLetters, featurizeLostUpstream, featurizeDuplicateUnits,
        featurizeFencedUnits, featurizeOffsetResets, featurizePartitionLag, featurizeCommitDuration, featurizeRedisOutages,
        featurizeKafkaOutages, featurizeRedisUp, featurizeKafkaUp, featurizeLeasesHeld, featurizeLeasesLost, featurizePaused,
        trainerStep, trainerSamples, trainerLoss, trainerProgressive, trainerStepSeconds, trainerStepDuration,
        trainerCheckpointStall, trainerCheckpointWrite, trainerCheckpoints, trainerLastCheckpointStep, trainerRanks, trainerFreshness,
        serveRequests, serveRequestDuration, serveRowsPredicted, serveRecommendations, serveReloads, serveRejectedCheckpoints,
        serveTimedOutConnections, serveModelLoaded, serveModelStep, serveModelInfo, serveModelLoadSeconds, serveModelNewestEvent,
        serveFreshness,
    ]

    public static func of(_ component: MetricDefinition.Component) -> [MetricDefinition] { all.filter { $0.component == component } }

    /// The definition a series name (`…_bucket`, `…_sum`, `…_count` included) belongs to.
    public static func definition(ofSeries series: String) -> MetricDefinition? {
        all.first { $0.seriesNames.contains(series) }
    }
}

import ArgumentParser
import Dashboard
import Dispatch
import FeatureStore
import Foundation
import Logging
import Streaming

struct DashboardCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dashboard",
        abstract: "A live web page of the running cluster: workers and lag, training curves, the served model, checkpoints.",
        discussion: """
        One HTML page (GET /) that reloads itself every --refresh seconds, with charts drawn on the \
        server as inline SVG (no script, no CDN: works offline), and the same data as JSON \
        (GET /dashboard.json). It reads what the cluster already records: the feature store in Redis \
        (partitions, workers, shards, dead letters — what `streamrec status` shows; with --topic also \
        each partition's Kafka watermarks and lag), the trainer's heartbeat and history \
        (sr:train:status, sr:train:history: step, loss terms, progressive AUC or NDCG@10, samples/s, \
        freshness, written by trainer rank 0 every --log-every steps), serve's GET /v1/model and \
        GET /metrics (--serve), and the checkpoint versions in --checkpoints (without it, the versions \
        the trainer's history names). A source that does not answer shows why; the rest still shows. \
        Stops on SIGINT/SIGTERM.
        """)

    @OptionGroup var settings: SettingsOptions

    @OptionGroup(title: "Redis") var store: RedisOptions

    @OptionGroup(title: "Kafka (with --topic)") var kafka: KafkaOptions
    @OptionGroup(title: "Logging") var logging: LogOptions

    @Option(help: "Kafka topic whose per-partition lag to show (without it: progress and owners only).")
    var topic: String?

    @Option(help: ArgumentHelp("Base URL of `streamrec serve` (its /v1/model and /metrics).", valueName: "URL"))
    var serve: String = "http://127.0.0.1:8080"

    @Flag(help: "Leave out the serving section (no serve to ask).")
    var noServe = false

    @Option(name: [.customLong("checkpoints"), .customLong("checkpoint-dir")],
            help: ArgumentHelp("Checkpoints root to list (the trainer's --checkpoint-dir).", valueName: "DIR"))
    var checkpoints: String?

    @Option(help: "Address to bind (loopback by default; use 0.0.0.0 to let other machines see the page).")
    var host: String = "127.0.0.1"

    @Option(help: "TCP port.")
    var port: Int = 8090

    @Option(help: "Seconds between snapshots; the page reloads itself as often (1…3600).")
    var refresh: Int = 2

    func validate() throws {
        if !(0...65535).contains(port) { throw ValidationError("--port must be 0…65535") }
        if !(1...3600).contains(refresh) { throw ValidationError("--refresh must be 1…3600 seconds") }
        if topic == nil && (kafka.bootstrap != nil || kafka.bootstrapFile != nil) {
            throw ValidationError("--bootstrap/--bootstrap-file need --topic (the topic whose lag to show)")
        }
        if !noServe {
            guard let url = URL(string: serve), ["http", "https"].contains(url.scheme ?? ""), url.host != nil else {
                throw ValidationError("--serve must be an http:// URL such as http://127.0.0.1:8080 (or give --no-serve)")
            }
        }
    }

    func run() throws {
        let logger = try logging.start("dashboard", tag: "dashboard:")
        let signals = ShutdownSignals.install()
        let settingsFile = try settings.load()
        let redis = try store.resolve(settingsFile)
        let sources = DashboardSources(redis: redis.address.value, prefix: redis.prefix.value,
                                       serve: noServe ? nil : URL(string: serve.hasSuffix("/") ? String(serve.dropLast()) : serve),
                                       checkpoints: checkpoints.map { URL(fileURLWithPath: $0, isDirectory: true) })
        let collector = DashboardCollector(sources: sources)
        var kafkaNote = "lag: off (no --topic)"
        if let topic {
            let kafkaSettings = try kafka.resolve(settingsFile, role: .consumer)
            kafkaNote = "lag of topic \(topic) from Kafka at \(kafkaSettings.bootstrap)"
            var consumer: KafkaConsumer?
            collector.partitionLag = { status, store in
                do {
                    if consumer == nil { consumer = try KafkaConsumer(config: kafkaSettings.config) }
                    try Status.addLag(&status, topic: topic, consumer: consumer!, store: store, timeout: .seconds(2))
                    return nil
                } catch {
                    consumer = nil
                    return "Kafka at \(kafkaSettings.bootstrap.value) not reachable (\(error)): no lag this time"
                }
            }
        }
        var dashboard = DashboardSettings(sources: sources)
        dashboard.host = host
        dashboard.port = port
        dashboard.refreshSeconds = refresh
        logger.info(.init(stringLiteral: "http://\(host):\(port)/ (JSON: /dashboard.json); Redis \(redis.address), prefix \(redis.prefix.value); "
              + "\(sources.serve.map { "serve \($0.absoluteString)" } ?? "no serve"); "
              + "checkpoints \(checkpoints ?? "from the trainer's history"); \(kafkaNote); refresh \(refresh) s"))
        let outcome = DashboardOutcome()
        let done = DispatchSemaphore(value: 0)
        Task {
            do {
                try await runDashboardServer(settings: dashboard, collector: collector, logger: logger) {
                    let sig = signals.wait()
                    logger.info("\(sig.map(ShutdownSignals.name(of:)) ?? "signal") received: stopping")
                }
            } catch { outcome.error = error }
            done.signal()
        }
        done.wait()
        if let error = outcome.error { throw CLIError("dashboard on \(host):\(port) failed: \(error) (is the port in use? try --port)") }
        logger.info("stopped")
    }
}

private final class DashboardOutcome: @unchecked Sendable {
    var error: (any Error)?
}

/// One line on stdout, unbuffered (scripts wait for the address line).

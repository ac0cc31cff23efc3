// A feature worker with an authenticated and a TLS Redis: a refused login is one AUTH and one
// clear error (no retries); over rediss:// every row lands in exactly one batch.
import Featurize
import Foundation
import Streaming
import Testing
import TestSupport

@Suite("featurize worker: Redis login", .serialized, .timeLimit(.minutes(2)))
struct FeaturizeRedisLoginTests {
    @Test("a wrong Redis password stops the worker at once after one AUTH (no retry storm)")
    func wrongPassword() throws {
        let redis = try RedisServerFixture(password: "right")
        defer { redis.stop() }
        let cluster = try MockKafkaCluster(brokers: 1)
        defer { cluster.destroy() }
        try cluster.createTopic("login", partitions: 2)
        let rows = syntheticRows(50, seed: 3)
        _ = try produce(rows, topic: "login", bootstrap: cluster.bootstrapServers, partitions: 2)
        let started = ContinuousClock.now
        let worker = WorkerThread(options: options(topic: "login", bootstrap: cluster.bootstrapServers,
                                                   redis: "redis://:wrong@127.0.0.1:\(redis.port)", untilIdle: .seconds(30)),
                                  stats: statsFor(rows))
        var text = ""
        do { _ = try worker.join(timeout: .seconds(60)) } catch { text = "\(error)" }
        #expect(text.contains("refused the login") && text.contains("redis://:***@127.0.0.1:\(redis.port)") && !text.contains("wrong@"), "\(text)")
        #expect(ContinuousClock.now - started < .seconds(15))
        #expect(try redis.failedLogins() == 1)
    }

    @Test("rows → batches through a TLS Redis with a password (rediss://), and status over TLS")
    func overTLS() throws {
        let dir = try temporaryTestDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let certificates = try TestCertificates(in: dir)
        let redis = try RedisServerFixture(password: "tls-pw", tls: certificates)
        defer { redis.stop() }
        let cluster = try MockKafkaCluster(brokers: 1)
        defer { cluster.destroy() }
        try cluster.createTopic("tls", partitions: 2)
        let rows = syntheticRows(600, seed: 5)
        _ = try produce(rows, topic: "tls", bootstrap: cluster.bootstrapServers, partitions: 2)
        let address = "rediss://:tls-pw@127.0.0.1:\(redis.port)?ca=\(certificates.ca)"
        let summary = try WorkerThread(options: options(topic: "tls", bootstrap: cluster.bootstrapServers, redis: address, batchSize: 64),
                                       stats: statsFor(rows)).join()
        #expect(summary.rows == 600)
        let entries = try allBatches(redis: address, featureShards: 4)
        #expect(entries.reduce(0) { $0 + $1.batch.batch.count } == 600)
        for p in Int32(0)..<2 {
            let ranges = entries.filter { $0.batch.source.partition == p }.map { ($0.batch.source.firstOffset, $0.batch.source.lastOffset) }
            #expect(coverageProblem(ranges.sorted { $0.0 < $1.0 }, end: 300) == nil)
        }
        guard let bin = streamrecBinary() else { Issue.record("streamrec is not built"); return }
        let status = try runProcess(bin, ["status", "--config", "/dev/null", "--redis", "rediss://127.0.0.1:\(redis.port)",
                                          "--redis-tls-ca", certificates.ca], environment: ["STREAMREC_REDIS_PASSWORD": "tls-pw"])
        #expect(status.status == 0 && status.stdout.contains("tls/0  progress 300") && status.stdout.contains("tls/1  progress 300"),
                "\(status.stdout)\(status.stderr)")
    }
}

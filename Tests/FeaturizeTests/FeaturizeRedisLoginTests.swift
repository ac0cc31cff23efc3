// A feature worker facing a Redis that refuses its login: one AUTH, one clear error, no retries.
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
}

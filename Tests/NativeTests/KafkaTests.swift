// Kafka smoke tests against librdkafka's in-process mock cluster.
import Foundation
import Streaming
import Testing
import TestSupport

@Suite("Kafka funnel (librdkafka)", .timeLimit(.minutes(1)))
struct KafkaTests {
    @Test("100 keyed messages over 4 partitions arrive exactly once by explicit assignment")
    func produceConsumeExactlyOnce() throws {
        let cluster = try MockKafkaCluster(brokers: 3)
        defer { cluster.destroy() }
        #expect(cluster.bootstrapServers.split(separator: ",").count == 3)
        try cluster.createTopic("events", partitions: 4, replicationFactor: 1)
        let config = KafkaConfig(bootstrapServers: cluster.bootstrapServers)

        let producer = try KafkaProducer(config: config)
        #expect(try producer.partitionCount(topic: "events") == 4)
        let count = 100
        for i in 0 ..< count {
            try producer.produce(topic: "events", key: Array("key-\(i)".utf8), value: Array("value-\(i)\u{0}end".utf8))
        }
        try producer.flush(timeout: .seconds(20))
        let stats = producer.deliveryStats
        #expect(stats.succeeded == count)
        #expect(stats.failed == 0)
        #expect(stats.firstError == nil)
        #expect(producer.outstanding == 0)

        let consumer = try KafkaConsumer(config: config)
        #expect(try consumer.partitionCount(topic: "events") == 4)
        try consumer.assign((0 ..< 4).map { KafkaAssignment(topic: "events", partition: $0, offset: 0) })
        var seen: [String: KafkaMessage] = [:]
        var duplicates = 0
        let deadline = ContinuousClock.now + .seconds(20)
        while seen.count < count && ContinuousClock.now < deadline {
            let batch = try consumer.poll(maxMessages: 64, timeout: .milliseconds(200))
            #expect(batch.errors.isEmpty, "consumer errors: \(batch.errors.map(\.error))")
            for m in batch.messages {
                let key = String(decoding: m.key ?? [], as: UTF8.self)
                if seen[key] != nil { duplicates += 1 }
                seen[key] = m
            }
        }
        // Nothing more arrives after everything was read.
        let extra = try consumer.poll(maxMessages: 64, timeout: .milliseconds(300))
        #expect(extra.messages.isEmpty)
        #expect(duplicates == 0)
        #expect(seen.count == count)
        for i in 0 ..< count {
            let m = try #require(seen["key-\(i)"], "message key-\(i) missing")
            #expect(m.value == Array("value-\(i)\u{0}end".utf8))
            #expect(m.topic == "events")
            #expect((0 ..< 4).contains(m.partition))
        }
        // Keyed messages spread over partitions, and each partition's offsets are 0..<n.
        var perPartition: [Int32: [Int64]] = [:]
        for m in seen.values { perPartition[m.partition, default: []].append(m.offset) }
        #expect(perPartition.count > 1)
        var highSum: Int64 = 0
        for p in Int32(0) ..< 4 {
            let offsets = (perPartition[p] ?? []).sorted()
            #expect(offsets == (0 ..< Int64(offsets.count)).map { $0 })
            let w = try consumer.watermarks(topic: "events", partition: p)
            #expect(w.low == 0)
            #expect(w.high == Int64(offsets.count))
            highSum += w.high
        }
        #expect(highSum == Int64(count))
    }

    @Test("explicit partition and start offset are honoured")
    func assignFromOffset() throws {
        let cluster = try MockKafkaCluster(brokers: 1)
        defer { cluster.destroy() }
        try cluster.createTopic("t", partitions: 2)
        let config = KafkaConfig(bootstrapServers: cluster.bootstrapServers)
        let producer = try KafkaProducer(config: config)
        for i in 0 ..< 10 { try producer.produce(topic: "t", partition: 1, key: nil, value: "m\(i)") }
        try producer.flush(timeout: .seconds(10))
        #expect(producer.deliveryStats.succeeded == 10)

        let consumer = try KafkaConsumer(config: config)
        #expect(try consumer.watermarks(topic: "t", partition: 0) == KafkaWatermarks(low: 0, high: 0))
        #expect(try consumer.watermarks(topic: "t", partition: 1) == KafkaWatermarks(low: 0, high: 10))
        try consumer.assign([KafkaAssignment(topic: "t", partition: 1, offset: 7)])
        var values: [String] = []
        let deadline = ContinuousClock.now + .seconds(10)
        while values.count < 3 && ContinuousClock.now < deadline {
            let batch = try consumer.poll(timeout: .milliseconds(200))
            values += batch.messages.map { String(decoding: $0.value, as: UTF8.self) }
            #expect(batch.messages.allSatisfy { $0.key == nil && $0.partition == 1 })
        }
        #expect(values == ["m7", "m8", "m9"])
    }

    @Test("invalid librdkafka properties are reported as KafkaError")
    func invalidProperty() {
        #expect {
            _ = try KafkaProducer(config: KafkaConfig(["no.such.property": "1"]))
        } throws: { error in
            guard let e = error as? KafkaError else { return false }
            return e.message.contains("no.such.property")
        }
    }
}

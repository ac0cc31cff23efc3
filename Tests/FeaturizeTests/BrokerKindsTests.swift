// The two brokers the integration tests run against, side by side: topic creation through the
// admin API and what each broker does that the other does not (docs/ARCHITECTURE.md, "Brokers
// tested", lists the differences these tests pin down).
import Foundation
import StreamRecNumerics
import Streaming
import Testing
import TestSupport

@Suite("the brokers tested: mock and noida-db, topics through the admin API", .serialized, .timeLimit(.minutes(2)))
struct BrokerKindsTests {
    @Test("noida-db: topics through the admin API with their partitions and configs (retention.bytes kept), each error named; auto-creation makes ONE partition")
    func noidaAdminTopics() throws {
        let broker = try startBroker(.noida, topics: ["rows": 4])
        defer { broker.stop() }
        let admin = try KafkaAdmin(config: KafkaConfig(bootstrapServers: broker.bootstrapServers))
        #expect(try admin.partitionCount(topic: "rows") == 4)
        let config = try admin.topicConfig("rows")
        #expect(config["retention.bytes"] == "\(TestKafkaBroker.retentionBytes)", "\(config)")
        #expect(config["message.timestamp.type"] == "CreateTime", "\(config)")
        try admin.createTopics([KafkaNewTopic(name: "more", partitions: 5, config: ["retention.bytes": "1048576"])])
        #expect(try admin.partitionCount(topic: "more") == 5)
        #expect(try admin.topicConfig("more")["retention.bytes"] == "1048576")
        #expect {
            try admin.createTopics([KafkaNewTopic(name: "rows", partitions: 4)])
        } throws: { error in
            guard let e = error as? KafkaError else { return false }
            return e.code == 36 && e.description.contains("topic rows")   // TOPIC_ALREADY_EXISTS, named
        }
        #expect { try admin.createTopics([KafkaNewTopic(name: "rf3", partitions: 1, replicationFactor: 3)]) } throws: {
            ($0 as? KafkaError)?.code == 38   // INVALID_REPLICATION_FACTOR: a single node
        }
        #expect { try admin.createTopics([KafkaNewTopic(name: "bad", partitions: 1, config: ["no.such.config": "1"])]) } throws: {
            ($0 as? KafkaError)?.code == 40   // INVALID_CONFIG
        }
        // A client that allows auto-creation gets a topic of one partition: why the tests (and a
        // deployment) create topics first. Our producer does not allow it (RowProducer).
        let autoCreating = try KafkaProducer(config: KafkaConfig(bootstrapServers: broker.bootstrapServers, ["allow.auto.create.topics": "true"]))
        #expect(try autoCreating.partitionCount(topic: "made-by-metadata") == 1)
        let strict = try KafkaProducer(config: KafkaConfig(bootstrapServers: broker.bootstrapServers, RowProducer.defaultProperties))
        #expect(throws: KafkaError.self) { _ = try strict.partitionCount(topic: "never-created", timeout: .seconds(3)) }
    }

    @Test("librdkafka 2.0.2's mock answers no admin CreateTopics (it has no controller): its topics come from rd_kafka_mock_topic_create, or auto-creation (4 partitions)")
    func mockHasNoAdminCreateTopics() throws {
        let broker = try startBroker(.mock, topics: ["rows": 4])
        defer { broker.stop() }
        let admin = try KafkaAdmin(config: KafkaConfig(bootstrapServers: broker.bootstrapServers))
        #expect(try admin.partitionCount(topic: "rows") == 4)
        // If a later librdkafka's mock answers, this fails: then TestKafkaBroker can create topics
        // through the admin API on both brokers.
        #expect { try admin.createTopics([KafkaNewTopic(name: "more", partitions: 2)], timeout: .seconds(2)) } throws: {
            ($0 as? KafkaError)?.isTimeout == true
        }
        // And it creates an unknown topic, with 4 partitions, even for a client that does not allow it.
        let strict = try KafkaProducer(config: KafkaConfig(bootstrapServers: broker.bootstrapServers, RowProducer.defaultProperties))
        #expect(try strict.partitionCount(topic: "never-created") == 4)
    }
}

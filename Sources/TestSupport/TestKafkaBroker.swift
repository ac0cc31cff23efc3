// The Kafka broker an integration test runs against, by kind, so one test body covers both
// broker implementations (Swift Testing `arguments: KafkaBrokerKind.allCases`).
import Foundation
import Streaming

/// Which Kafka-protocol broker a test runs against.
public enum KafkaBrokerKind: String, Sendable, CaseIterable, CustomStringConvertible {
    /// librdkafka's mock cluster (`MockKafkaCluster`, what `streamrec broker` runs): the default
    /// for the demo and every fault test (it can take a broker down and up again in process).
    case mock
    /// noida-db 0.2.3 (`NoidaBrokerFixture`): a second, independently written broker.
    case noida

    public var description: String { rawValue }
}

/// noida-db was not found and the run does not require it (see `NoidaBrokerFixture.isRequired`):
/// the test is skipped and says why.
public struct KafkaBrokerUnavailable: Error, CustomStringConvertible {
    public let description: String
}

/// A running broker of some kind with topics created; `stop()` (also deinit) ends it.
public final class TestKafkaBroker: @unchecked Sendable {
    /// `retention.bytes` of every topic the tests create: the mock keeps about 5 MiB per partition
    /// (its fixed segment limit), so a topic on noida-db is bounded the same way, set through the
    /// admin API as on a real cluster (a real broker's default is unlimited).
    public static let retentionBytes: Int64 = 5 << 20

    public let kind: KafkaBrokerKind
    /// `host:port[,host:port…]`.
    public let bootstrapServers: String
    /// The broker's log (noida-db's output; the mock runs in this process and logs nothing here).
    public var log: String { noida?.log ?? "" }

    private let mock: MockKafkaCluster?
    private let noida: NoidaBrokerFixture?

    /// Starts a broker of `kind` with `topics` (name → partitions), each with `retention.bytes`
    /// = `retentionBytes` where the broker takes topic configs (noida-db; the mock has none).
    /// Throws `KafkaBrokerUnavailable` when noida-db is missing and not required; a `FixtureError`
    /// naming what to do when it is required.
    public init(_ kind: KafkaBrokerKind, topics: [String: Int], retentionBytes: Int64 = TestKafkaBroker.retentionBytes) throws {
        self.kind = kind
        switch kind {
        case .mock:
            let cluster = try MockKafkaCluster(brokers: 1)
            for (name, partitions) in topics.sorted(by: { $0.key < $1.key }) {
                try cluster.createTopic(name, partitions: partitions)
            }
            mock = cluster; noida = nil
            bootstrapServers = cluster.bootstrapServers
        case .noida:
            if NoidaBrokerFixture.configuredBinary == nil && !NoidaBrokerFixture.isRequired {
                throw KafkaBrokerUnavailable(description: "noida-db not installed (STREAMREC_NOIDA_BIN unset): run `bash scripts/noida.sh` and export what it prints, or run scripts/test.sh")
            }
            let specs = topics.sorted(by: { $0.key < $1.key }).map {
                KafkaNewTopic(name: $0.key, partitions: $0.value, config: ["retention.bytes": "\(retentionBytes)"])
            }
            let fixture = try NoidaBrokerFixture(topics: specs)
            mock = nil; noida = fixture
            bootstrapServers = fixture.bootstrapServers
        }
    }

    /// Stops the broker. Idempotent.
    public func stop() {
        mock?.destroy()
        noida?.stop()
    }

    deinit { stop() }
}

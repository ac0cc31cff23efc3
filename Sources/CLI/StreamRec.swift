import ArgumentParser
import Foundation
import Logging
import Observability

@main
struct StreamRec: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "streamrec",
        abstract: "Distributed online-learning training cluster: Kafka → features → MPI trainers → serving.",
        subcommands: [Gen.self, Stats.self, Broker.self, Produce.self, Featurize.self, Status.self, Popular.self, Train.self, Eval.self,
                      Serve.self, DashboardCommand.self, Supervise.self, Ckpt.self, Bench.self, SelfTest.self])

    /// ArgumentParser's main, except that once a command has started logging as JSON, the error
    /// that ends it is a JSON line too (a log collector would not parse a bare `Error: …`).
    static func main() {
        do {
            var command = try parseAsRoot()
            try command.run()
        } catch {
            if LogSetup.format == .json, !(error is ExitCode), !(error is CleanExit) {
                Logger(label: "streamrec").critical("\(fullMessage(for: error))")
                exit(withError: exitCode(for: error))
            }
            exit(withError: error)
        }
    }
}

import ArgumentParser

@main
struct StreamRec: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "streamrec",
        abstract: "Distributed online-learning training cluster: Kafka → features → MPI trainers → serving.",
        subcommands: [Bench.self])
}

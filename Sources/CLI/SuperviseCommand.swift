import ArgumentParser
import Foundation
import Streaming
import TrainerService

struct Supervise: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Keep an `mpirun … streamrec train …` job running: restart it with back-off when it ends abnormally.",
        discussion: """
        Runs the command after `--` (normally mpirun) as a child. When it ends abnormally — a rank \
        killed, a host lost, MPI_Abort — it is started again after a back-off (--initial-backoff \
        doubling up to --max-backoff; reset after a run of 60 s), and the trainer resumes from the \
        newest checkpoint, so every row is still trained exactly once. At the --max-failures-th \
        abnormal end within --failure-window seconds it gives up, says why and exits non-zero. An \
        exit with status 0 (the job finished, e.g. --until-idle) ends the supervisor with 0.

        With --hostfile, each start probes every host (--probe, `{host}` replaced) and runs the \
        job on those that answer: `{hostfile}` and `{np}` in the command become the filtered \
        hostfile and its slot count, e.g. \
        `streamrec supervise --hostfile hosts -- mpirun --hostfile {hostfile} -np {np} streamrec train --source redis …`.

        SIGTERM/SIGINT stop the job through rank 0 when it runs on this host (finish the step, \
        checkpoint, stop every rank; exit 0), else through mpirun; after --stop-timeout mpirun is \
        killed. cluster/train.sh is this command with --max-failures 0.
        """)

    @OptionGroup(title: "Logging") var logging: LogOptions

    @Option(help: "Give up at this many abnormal ends within --failure-window (0 = never restart).")
    var maxFailures: Int = 5

    @Option(help: "Seconds over which abnormal ends are counted.")
    var failureWindow: Double = 600

    @Option(help: "Seconds before the first restart (doubles with each consecutive failure).")
    var initialBackoff: Double = 1

    @Option(help: "Longest back-off, in seconds.")
    var maxBackoff: Double = 30

    @Option(help: "Open MPI hostfile whose hosts are probed before each start (see the discussion).")
    var hostfile: String?

    @Option(help: "Probe run for each host of --hostfile; `{host}` is replaced. Exit 0 = the host is up.")
    var probe: String = "ssh -o BatchMode=yes -o ConnectTimeout=5 {host} true"

    @Option(help: "Seconds a probe may take.")
    var probeTimeout: Double = 10

    @Option(help: "Seconds a stopping job may take before mpirun is killed.")
    var stopTimeout: Double = 60

    @Argument(parsing: .postTerminator, help: "The job: `-- mpirun … streamrec train …`.")
    var command: [String] = []

    func validate() throws {
        guard !command.isEmpty else { throw ValidationError("give the job after --, e.g. streamrec supervise -- mpirun -np 2 streamrec train --source redis") }
        guard maxFailures >= 0 else { throw ValidationError("--max-failures must be ≥ 0") }
        for (name, v) in [("--failure-window", failureWindow), ("--initial-backoff", initialBackoff), ("--max-backoff", maxBackoff),
                          ("--probe-timeout", probeTimeout), ("--stop-timeout", stopTimeout)] where !(v > 0) {
            throw ValidationError("\(name) must be a positive number of seconds, got \(v)")
        }
        if let hostfile, !FileManager.default.fileExists(atPath: hostfile) { throw ValidationError("--hostfile \(hostfile) does not exist") }
        if hostfile == nil, command.contains(where: { $0.contains("{hostfile}") || $0.contains("{np}") }) {
            throw ValidationError("{hostfile}/{np} in the command need --hostfile")
        }
    }

    func run() throws {
        let logger = try logging.start("supervise", tag: "supervise:")
        let signals = ShutdownSignals.install()
        var options = SupervisorOptions(command: command)
        options.policy.maxFailures = maxFailures
        options.policy.window = .seconds(failureWindow)
        options.policy.initialBackoff = .seconds(initialBackoff)
        options.policy.maxBackoff = .seconds(maxBackoff)
        options.hostfile = hostfile
        options.probe = probe
        options.probeTimeout = .seconds(probeTimeout)
        options.stopTimeout = .seconds(stopTimeout)
        let supervisor = JobSupervisor(options: options, signals: signals, logger: logger)
        let status = try supervisor.run()
        if status != 0 { throw ExitCode(status) }
    }
}

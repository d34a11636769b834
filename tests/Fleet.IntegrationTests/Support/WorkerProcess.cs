using System.Diagnostics;

namespace Fleet.IntegrationTests.Support;

/// <summary>A <c>Fleet.Worker</c> process started from the build output, configured through environment variables.</summary>
public sealed class WorkerProcess : IAsyncDisposable
{
    private readonly Process _process;
    private readonly System.Collections.Concurrent.ConcurrentQueue<string> _output = new();

    private WorkerProcess(Process process) => _process = process;

    public int Pid => _process.Id;

    /// <summary>Everything the process wrote to stdout and stderr so far.</summary>
    public string Output => string.Join('\n', _output);

    public bool HasExited => _process.HasExited;

    /// <summary>The exit code, once <see cref="HasExited"/>.</summary>
    public int ExitCode => _process.ExitCode;

    /// <summary>The prefix of this process's worker id in fleet.workers and task_attempts (<c>host:pid:</c>).</summary>
    public string WorkerIdPrefix(string host) => $"{host}:{_process.Id}:";

    /// <summary>Ends the process at once, as a crash or an OOM kill would (SIGKILL).</summary>
    public async Task KillAsync()
    {
        _process.Kill(entireProcessTree: true);
        await _process.WaitForExitAsync();
    }

    /// <param name="settings">Configuration keys (<c>Worker:HostName</c>), passed as environment variables.</param>
    /// <param name="networkNamespace">Runs the worker inside this network namespace (<c>ip netns exec</c>, which execs, so
    /// <see cref="Pid"/> is the worker's own pid): a simulated server of the multi-host tests.</param>
    public static WorkerProcess Start(Dictionary<string, string?> settings, string? networkNamespace = null)
    {
        var info = networkNamespace is null
            ? new ProcessStartInfo("dotnet", [WorkerDll()])
            : new ProcessStartInfo("ip", ["netns", "exec", networkNamespace, "dotnet", WorkerDll()]);
        info.RedirectStandardOutput = true;
        info.RedirectStandardError = true;
        info.UseShellExecute = false;
        foreach (var (key, value) in settings)
        {
            info.Environment[key.Replace(":", "__", StringComparison.Ordinal)] = value;
        }

        var process = Process.Start(info) ?? throw new InvalidOperationException("could not start Fleet.Worker");
        var worker = new WorkerProcess(process);
        process.OutputDataReceived += (_, e) =>
        {
            if (e.Data is not null)
            {
                worker._output.Enqueue(e.Data);
            }
        };
        process.ErrorDataReceived += (_, e) =>
        {
            if (e.Data is not null)
            {
                worker._output.Enqueue(e.Data);
                Console.Error.WriteLine($"[worker {process.Id}] {e.Data}");
            }
        };
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        return worker;
    }

    /// <summary>Waits until the process has exited and its output is read to the end.</summary>
    public Task WaitForExitAsync(CancellationToken cancellationToken) => _process.WaitForExitAsync(cancellationToken);

    /// <summary>Sends SIGTERM and waits for the exit code.</summary>
    public async Task<int> TerminateAsync(TimeSpan timeout)
    {
        using (var kill = Process.Start("kill", ["-TERM", _process.Id.ToString(System.Globalization.CultureInfo.InvariantCulture)]))
        {
            await kill.WaitForExitAsync();
        }

        using var cts = new CancellationTokenSource(timeout);
        await _process.WaitForExitAsync(cts.Token);
        return _process.ExitCode;
    }

    public async ValueTask DisposeAsync()
    {
        if (!_process.HasExited)
        {
            _process.Kill(entireProcessTree: true);
            await _process.WaitForExitAsync();
        }

        _process.Dispose();
    }

    private static string WorkerDll()
    {
        // The worker's own build output, next to this test assembly's: src/Fleet.Worker/bin/<Configuration>/net10.0/.
        var configuration = new DirectoryInfo(AppContext.BaseDirectory).Parent!.Name;
        var dll = Repository.PathTo("src", "Fleet.Worker", "bin", configuration, "net10.0", "Fleet.Worker.dll");
        return File.Exists(dll) ? dll : throw new FileNotFoundException($"Build the solution first: {dll} is missing.");
    }
}

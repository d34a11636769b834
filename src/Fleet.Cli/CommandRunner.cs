namespace Fleet.Cli;

/// <summary>Runs a command body: user errors print one line to stderr and exit 2; Ctrl+C exits 130.</summary>
internal static class CommandRunner
{
    public static async Task<int> RunAsync(Func<CancellationToken, Task<int>> body, CancellationToken cancellationToken)
    {
        try
        {
            return await body(cancellationToken).ConfigureAwait(false);
        }
        catch (CliException ex)
        {
            await Console.Error.WriteLineAsync($"fleet: {ex.Message}").ConfigureAwait(false);
            return 2;
        }
        catch (Exception ex) when (Fleet.Client.Tls.ServerCertificateException.FindIn(ex) is { } refused)
        {
            // A broker certificate that is refused: which server and why, not the client library's wrapping.
            await Console.Error.WriteLineAsync($"fleet: {refused.Message}").ConfigureAwait(false);
            return 2;
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
            await Console.Error.WriteLineAsync("fleet: cancelled").ConfigureAwait(false);
            return 130;
        }
    }
}

using System.Diagnostics;
using System.Globalization;
using Xunit.Abstractions;
using Xunit.Sdk;

namespace Fleet.IntegrationTests.Support;

/// <summary>
/// Where the fixture says what it does: stderr (shown by <c>dotnet test</c>), xunit's diagnostic sink
/// (shown with <c>"diagnosticMessages": true</c>) and, for owned servers, <c>fixture.log</c> in the run's temp dir.
/// </summary>
internal sealed class FixtureLog(IMessageSink? sink)
{
    private readonly Stopwatch _clock = Stopwatch.StartNew();
    private readonly Lock _fileLock = new();
    private string? _file;

    public TimeSpan Elapsed => _clock.Elapsed;

    public void WriteAlsoTo(string file) => _file = file;

    public void Info(string message)
    {
        var line = string.Create(CultureInfo.InvariantCulture, $"[fleet-servers +{_clock.Elapsed.TotalSeconds:0.00}s] {message}");
        Console.Error.WriteLine(line);
        sink?.OnMessage(new DiagnosticMessage(line));
        var file = _file;
        if (file is null)
        {
            return;
        }

        lock (_fileLock)
        {
            try
            {
                File.AppendAllText(file, DateTimeOffset.UtcNow.ToString("O", CultureInfo.InvariantCulture) + " " + line + Environment.NewLine);
            }
            catch (IOException)
            {
                // The temp dir may be gone during cleanup.
            }
            catch (UnauthorizedAccessException)
            {
                // Same.
            }
        }
    }

    /// <summary>Hides the password of an amqp/http URI or an Npgsql connection string.</summary>
    public static string Redact(string value)
    {
        if (Uri.TryCreate(value, UriKind.Absolute, out var uri) && uri.UserInfo.Contains(':', StringComparison.Ordinal))
        {
            return value.Replace(uri.UserInfo, uri.UserInfo[..uri.UserInfo.IndexOf(':', StringComparison.Ordinal)] + ":***", StringComparison.Ordinal);
        }

        var parts = value.Split(';', StringSplitOptions.RemoveEmptyEntries)
            .Select(part => part.TrimStart().StartsWith("password", StringComparison.OrdinalIgnoreCase) ? "Password=***" : part);
        return string.Join(';', parts);
    }
}

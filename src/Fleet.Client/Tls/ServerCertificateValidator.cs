using System.Net.Security;
using System.Security.Authentication;
using System.Security.Cryptography.X509Certificates;

namespace Fleet.Client.Tls;

/// <summary>
/// Checks a server's certificate for every TLS connection Fleet opens to the broker (RabbitMQ.Client, MassTransit,
/// the management API's HttpClient): the chain must end in a trusted CA (the system store, or the CAs of a PEM file)
/// and the certificate must name the host that was dialled. A refusal throws <see cref="ServerCertificateException"/>
/// out of the TLS handshake, so that the error the caller sees says which server and what is wrong, instead of
/// "the remote certificate was rejected by the provided RemoteCertificateValidationCallback".
/// </summary>
public sealed class ServerCertificateValidator
{
    /// <summary>Chain against the system trust store, and the host name.</summary>
    public static readonly ServerCertificateValidator SystemTrust = new(null, "a CA of the system trust store");

    /// <summary>No check at all (<c>Tls:RabbitMqAllowUntrusted</c>).</summary>
    public static readonly ServerCertificateValidator AcceptAny = new(null, "anything") { AcceptsAny = true };

    private readonly Lazy<X509Certificate2Collection>? _roots;
    private readonly string _trustedDescription;

    /// <param name="caFile">PEM file of the CAs a chain must end in; null for the system trust store.</param>
    /// <param name="trustedDescription">How the trusted CAs are named in an error, e.g. the setting and its file.</param>
    public ServerCertificateValidator(string? caFile, string trustedDescription)
    {
        _trustedDescription = trustedDescription;
        if (caFile is not null)
        {
            _roots = new Lazy<X509Certificate2Collection>(() => LoadPem(caFile));
        }
    }

    public bool AcceptsAny { get; private init; }

    /// <summary>The callback for one server; <paramref name="server"/> names it in errors (e.g. <c>RabbitMQ at mq:5671</c>).</summary>
    public RemoteCertificateValidationCallback For(string server) =>
        (_, certificate, chain, errors) => AcceptsAny || (Problem(certificate, chain, errors) is not { } problem
            ? true
            : throw new ServerCertificateException($"{server} refused: {problem}."));

    /// <summary>What is wrong with the certificate, or null when it is good.</summary>
    public string? Problem(X509Certificate? certificate, X509Chain? chain, SslPolicyErrors errors)
    {
        if (certificate is null || errors.HasFlag(SslPolicyErrors.RemoteCertificateNotAvailable))
        {
            return "the server sent no certificate";
        }

        var leaf = certificate as X509Certificate2 ?? X509CertificateLoader.LoadCertificate(certificate.GetRawCertData());
        var problems = new List<string>();
        var status = ChainProblems(leaf, chain, errors);
        if (status.HasFlag(X509ChainStatusFlags.NotTimeValid))
        {
            problems.Add($"the certificate {leaf.Subject} is expired or not yet valid (valid {leaf.NotBefore.ToUniversalTime():u} to {leaf.NotAfter.ToUniversalTime():u})");
        }

        if ((status & ~X509ChainStatusFlags.NotTimeValid) != X509ChainStatusFlags.NoError)
        {
            problems.Add($"the certificate {leaf.Subject} (issued by {leaf.Issuer}) is not trusted: its chain does not end in {_trustedDescription} ({status})");
        }

        if (errors.HasFlag(SslPolicyErrors.RemoteCertificateNameMismatch))
        {
            problems.Add($"the certificate {leaf.Subject} does not name this host (it names {Names(leaf)})");
        }

        return problems.Count == 0 ? null : string.Join("; ", problems);
    }

    /// <summary>The certificates of a PEM file (other PEM blocks, such as keys, are skipped).</summary>
    public static X509Certificate2Collection LoadPem(string path)
    {
        var collection = new X509Certificate2Collection();
        collection.ImportFromPemFile(path);
        return collection;
    }

    private X509ChainStatusFlags ChainProblems(X509Certificate2 leaf, X509Chain? chain, SslPolicyErrors errors)
    {
        if (_roots is null)
        {
            // The handshake built the chain against the system store already.
            return !errors.HasFlag(SslPolicyErrors.RemoteCertificateChainErrors) ? X509ChainStatusFlags.NoError : Flags(chain?.ChainStatus ?? []);
        }

        // A private CA: build the chain again with only its certificates as roots (not the system store), with the
        // intermediates the server sent.
        using var custom = new X509Chain();
        custom.ChainPolicy.TrustMode = X509ChainTrustMode.CustomRootTrust;
        custom.ChainPolicy.RevocationMode = X509RevocationMode.NoCheck;
        custom.ChainPolicy.CustomTrustStore.AddRange(_roots.Value);
        if (chain is not null)
        {
            foreach (var element in chain.ChainElements)
            {
                custom.ChainPolicy.ExtraStore.Add(element.Certificate);
            }
        }

        return custom.Build(leaf) ? X509ChainStatusFlags.NoError : Flags(custom.ChainStatus);
    }

    /// <summary>The statuses of a chain that did not build; one that failed without a status counts as untrusted.</summary>
    private static X509ChainStatusFlags Flags(X509ChainStatus[] statuses) =>
        statuses.Aggregate(X509ChainStatusFlags.NoError, (all, s) => all | s.Status) is var flags && flags != X509ChainStatusFlags.NoError
            ? flags
            : X509ChainStatusFlags.UntrustedRoot;

    private static string Names(X509Certificate2 certificate)
    {
        var names = certificate.Extensions.OfType<X509SubjectAlternativeNameExtension>()
            .SelectMany(san => san.EnumerateDnsNames().Concat(san.EnumerateIPAddresses().Select(ip => ip.ToString())))
            .ToList();
        return names.Count > 0 ? string.Join(", ", names) : certificate.GetNameInfo(X509NameType.SimpleName, forIssuer: false);
    }
}

/// <summary>A server's certificate was refused; the message names the server and what is wrong with the certificate.</summary>
public sealed class ServerCertificateException : AuthenticationException
{
    public ServerCertificateException()
    {
    }

    public ServerCertificateException(string message)
        : base(message)
    {
    }

    public ServerCertificateException(string message, Exception innerException)
        : base(message, innerException)
    {
    }

    /// <summary>The first <see cref="ServerCertificateException"/> inside <paramref name="exception"/> (client libraries wrap it), or null.</summary>
    public static ServerCertificateException? FindIn(Exception? exception) => ExceptionChain.Find<ServerCertificateException>(exception);
}

/// <summary>
/// A process refuses to start because a connection would not be verified as the <c>Tls</c> settings require; the
/// message says which server and why. The hosts log it and exit with code 78 (configuration error).
/// </summary>
public sealed class FleetTlsException : Exception
{
    public const int ExitCode = 78;

    public FleetTlsException()
    {
    }

    public FleetTlsException(string message)
        : base(message)
    {
    }

    public FleetTlsException(string message, Exception innerException)
        : base(message, innerException)
    {
    }
}

/// <summary>Finds an exception of a type inside the inner exceptions that client libraries wrap around it.</summary>
public static class ExceptionChain
{
    /// <summary>The first <typeparamref name="T"/> in <paramref name="exception"/> or its inner exceptions (all of an aggregate's), or null.</summary>
    public static T? Find<T>(Exception? exception)
        where T : Exception
    {
        for (var current = exception; current is not null; current = current.InnerException)
        {
            if (current is T found)
            {
                return found;
            }

            if (current is AggregateException aggregate)
            {
                return aggregate.InnerExceptions.Select(Find<T>).FirstOrDefault(e => e is not null);
            }
        }

        return null;
    }
}

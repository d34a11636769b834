using System.Text.Json;
using Microsoft.AspNetCore.Http.Features;

namespace Fleet.Api.Submission;

/// <summary>
/// Reads a request body as JSON under a size limit. The body is read by hand rather than bound by minimal APIs
/// so that each kind of bad input gets its own status: over the limit 413 (checked on Content-Length first, and
/// again while reading, for chunked bodies), empty or malformed 400, each as <c>application/problem+json</c>.
/// </summary>
internal static class JsonBody
{
    private static readonly JsonDocumentOptions DocumentOptions = new() { MaxDepth = 64 };

    public static async Task<(JsonDocument? Document, IResult? Error)> ReadAsync(HttpRequest request, long limit, CancellationToken cancellationToken)
    {
        // Kestrel's own limit (30 MB by default) would cut a large batch short, and a smaller one must apply to
        // single tasks; it can only be changed before the body is read.
        var sizeFeature = request.HttpContext.Features.Get<IHttpMaxRequestBodySizeFeature>();
        if (sizeFeature is { IsReadOnly: false })
        {
            sizeFeature.MaxRequestBodySize = limit;
        }

        if (request.ContentLength > limit)
        {
            return (null, Problems.TooLarge(limit));
        }

        using var buffer = new MemoryStream(request.ContentLength is > 0 and <= int.MaxValue ? (int)request.ContentLength.Value : 4096);
        try
        {
            var chunk = new byte[64 * 1024];
            int read;
            while ((read = await request.Body.ReadAsync(chunk, cancellationToken).ConfigureAwait(false)) > 0)
            {
                if (buffer.Length + read > limit)
                {
                    return (null, Problems.TooLarge(limit));
                }

                buffer.Write(chunk, 0, read);
            }
        }
        catch (BadHttpRequestException ex) when (ex.StatusCode == StatusCodes.Status413PayloadTooLarge)
        {
            return (null, Problems.TooLarge(limit));
        }

        if (buffer.Length == 0)
        {
            return (null, Problems.BadRequest("Empty body", "The request body must be a JSON object."));
        }

        // JSON is UTF-8 (RFC 8259); the parser lets invalid bytes inside a string through, and they fail later, when
        // the string is read, as a 500. Refused here, with where they are.
        var bytes = buffer.GetBuffer().AsMemory(0, (int)buffer.Length);
        if (System.Text.Unicode.Utf8.IsValid(bytes.Span) is false)
        {
            var valid = FirstInvalidUtf8(bytes.Span);
            return (null, Problems.BadRequest("Not UTF-8", $"The request body must be UTF-8 text; byte {valid} is not valid UTF-8."));
        }

        try
        {
            return (JsonDocument.Parse(bytes, DocumentOptions), null);
        }
        catch (JsonException ex)
        {
            return (null, Problems.BadRequest("Malformed JSON", $"The request body is not valid JSON: {ex.Message}"));
        }
    }

    /// <summary>The offset of the first byte of <paramref name="bytes"/> that does not begin valid UTF-8.</summary>
    private static int FirstInvalidUtf8(ReadOnlySpan<byte> bytes)
    {
        var status = System.Text.Unicode.Utf8.ToUtf16(bytes, new char[bytes.Length], out var read, out _, replaceInvalidSequences: false);
        return status == System.Buffers.OperationStatus.Done ? bytes.Length : read;
    }
}

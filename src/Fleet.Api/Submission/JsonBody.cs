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

        try
        {
            return (JsonDocument.Parse(buffer.GetBuffer().AsMemory(0, (int)buffer.Length), DocumentOptions), null);
        }
        catch (JsonException ex)
        {
            return (null, Problems.BadRequest("Malformed JSON", $"The request body is not valid JSON: {ex.Message}"));
        }
    }
}

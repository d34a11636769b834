namespace Fleet.Api;

/// <summary>The API's error answers, all <c>application/problem+json</c> (RFC 9457).</summary>
internal static class Problems
{
    public static IResult BadRequest(string title, string detail, IDictionary<string, object?>? extensions = null) =>
        TypedResults.Problem(detail, statusCode: StatusCodes.Status400BadRequest, title: title, extensions: extensions);

    public static IResult Invalid(string title, IDictionary<string, string[]> errors, IDictionary<string, object?>? extensions = null) =>
        TypedResults.ValidationProblem(errors, detail: "See 'errors' for each field.", title: title, extensions: extensions);

    public static IResult TooLarge(long limit) =>
        TypedResults.Problem(
            $"The request body is larger than {limit} bytes.",
            statusCode: StatusCodes.Status413PayloadTooLarge,
            title: "Request too large",
            extensions: new Dictionary<string, object?> { ["limitBytes"] = limit });

    public static IResult TooLarge(string detail, IDictionary<string, object?>? extensions = null) =>
        TypedResults.Problem(detail, statusCode: StatusCodes.Status413PayloadTooLarge, title: "Request too large", extensions: extensions);

    public static IResult NotFound(string detail) =>
        TypedResults.Problem(detail, statusCode: StatusCodes.Status404NotFound, title: "Not found");

    public static IResult Conflict(string title, string detail, IDictionary<string, object?>? extensions = null) =>
        TypedResults.Problem(detail, statusCode: StatusCodes.Status409Conflict, title: title, extensions: extensions);
}

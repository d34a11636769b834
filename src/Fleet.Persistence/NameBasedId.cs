using System.Security.Cryptography;
using System.Text;

namespace Fleet.Persistence;

/// <summary>
/// Name-based UUIDs (version 8, RFC 9562, from SHA-256): the same name always gives the same id, so that a task
/// named by something other than a UUID (an AMQP message_id, a schedule's firing) is stored once however often it
/// arrives.
/// </summary>
public static class NameBasedId
{
    public static Guid From(string name)
    {
        ArgumentNullException.ThrowIfNull(name);
        Span<byte> hash = stackalloc byte[32];
        SHA256.HashData(Encoding.UTF8.GetBytes(name), hash);
        hash[6] = (byte)((hash[6] & 0x0F) | 0x80);
        hash[8] = (byte)((hash[8] & 0x3F) | 0x80);
        return new Guid(hash[..16], bigEndian: true);
    }
}

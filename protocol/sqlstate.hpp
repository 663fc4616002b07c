// SQLSTATE codes a proxy raises, named as in PostgreSQL's src/backend/utils/errcodes.txt.
// https://www.postgresql.org/docs/15/errcodes-appendix.html
#pragma once

#include <string_view>

namespace pgpilot::protocol::sqlstate {

// Class 00 - Successful Completion
inline constexpr std::string_view successful_completion = "00000";

// Class 08 - Connection Exception
inline constexpr std::string_view connection_exception = "08000";
inline constexpr std::string_view connection_does_not_exist = "08003";
inline constexpr std::string_view connection_failure = "08006";
inline constexpr std::string_view sqlclient_unable_to_establish_sqlconnection = "08001";
inline constexpr std::string_view protocol_violation = "08P01";

// Class 0A - Feature Not Supported
inline constexpr std::string_view feature_not_supported = "0A000";

// Class 22 - Data Exception
inline constexpr std::string_view invalid_parameter_value = "22023";

// Class 25 - Invalid Transaction State
inline constexpr std::string_view active_sql_transaction = "25001";
inline constexpr std::string_view read_only_sql_transaction = "25006";

// Class 28 - Invalid Authorization Specification
inline constexpr std::string_view invalid_authorization_specification = "28000";
inline constexpr std::string_view invalid_password = "28P01";

// Class 3D - Invalid Catalog Name
inline constexpr std::string_view invalid_catalog_name = "3D000";

// Class 42 - Syntax Error or Access Rule Violation
inline constexpr std::string_view syntax_error = "42601";
inline constexpr std::string_view insufficient_privilege = "42501";

// Class 53 - Insufficient Resources
inline constexpr std::string_view out_of_memory = "53200";
inline constexpr std::string_view too_many_connections = "53300";
inline constexpr std::string_view configuration_limit_exceeded = "53400";

// Class 55 - Object Not In Prerequisite State
inline constexpr std::string_view object_not_in_prerequisite_state = "55000";

// Class 57 - Operator Intervention
inline constexpr std::string_view query_canceled = "57014";
inline constexpr std::string_view admin_shutdown = "57P01";
inline constexpr std::string_view crash_shutdown = "57P02";
inline constexpr std::string_view cannot_connect_now = "57P03";
inline constexpr std::string_view idle_session_timeout = "57P05";
inline constexpr std::string_view idle_in_transaction_session_timeout = "25P03";

// Class XX - Internal Error
inline constexpr std::string_view internal_error = "XX000";

}  // namespace pgpilot::protocol::sqlstate

// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

/// @title HemiBTC
/// @notice hemiBTC: the ERC-20 (8 decimals, 1 unit = 1 satoshi) that the tunnel mints for BTC
/// locked in its vault and burns for withdrawals. Only the TunnelManager mints and burns.
/// @dev Installed by the chain at the tunnel's activation block at a fixed address, with no
/// constructor run: every value here is a constant or starts at zero.
contract HemiBTC {
    /// @notice The TunnelManager, the only minter and burner.
    address public constant TUNNEL = 0x4200000000000000000000000000000000000060;

    mapping(address => uint256) public balanceOf;
    mapping(address => mapping(address => uint256)) public allowance;
    uint256 public totalSupply;

    event Transfer(address indexed from, address indexed to, uint256 value);
    event Approval(address indexed owner, address indexed spender, uint256 value);

    /// @notice A mint or burn from anyone but the TunnelManager.
    error OnlyTunnel(address caller);
    /// @notice `account` holds `balance`, less than `needed`.
    error InsufficientBalance(address account, uint256 balance, uint256 needed);
    /// @notice `spender` may spend `allowed` of the owner's tokens, less than `needed`.
    error InsufficientAllowance(address spender, uint256 allowed, uint256 needed);
    /// @notice Tokens sent to the zero address (burning is a withdrawal).
    error ZeroAddress();

    function name() external pure returns (string memory) {
        return "Hemi Bitcoin";
    }

    function symbol() external pure returns (string memory) {
        return "hemiBTC";
    }

    function decimals() external pure returns (uint8) {
        return 8;
    }

    function transfer(address to, uint256 value) external returns (bool) {
        _move(msg.sender, to, value);
        return true;
    }

    function approve(address spender, uint256 value) external returns (bool) {
        allowance[msg.sender][spender] = value;
        emit Approval(msg.sender, spender, value);
        return true;
    }

    function transferFrom(address from, address to, uint256 value) external returns (bool) {
        uint256 allowed = allowance[from][msg.sender];
        if (allowed != type(uint256).max) {
            if (allowed < value) revert InsufficientAllowance(msg.sender, allowed, value);
            allowance[from][msg.sender] = allowed - value;
        }
        _move(from, to, value);
        return true;
    }

    /// @notice Mints `value` to `to`. TunnelManager only.
    function mint(address to, uint256 value) external {
        if (msg.sender != TUNNEL) revert OnlyTunnel(msg.sender);
        if (to == address(0)) revert ZeroAddress();
        totalSupply += value;
        balanceOf[to] += value;
        emit Transfer(address(0), to, value);
    }

    /// @notice Burns `value` of `from`'s tokens. TunnelManager only (a withdrawal).
    function burn(address from, uint256 value) external {
        if (msg.sender != TUNNEL) revert OnlyTunnel(msg.sender);
        uint256 balance = balanceOf[from];
        if (balance < value) revert InsufficientBalance(from, balance, value);
        balanceOf[from] = balance - value;
        totalSupply -= value;
        emit Transfer(from, address(0), value);
    }

    function _move(address from, address to, uint256 value) private {
        if (to == address(0)) revert ZeroAddress();
        uint256 balance = balanceOf[from];
        if (balance < value) revert InsufficientBalance(from, balance, value);
        balanceOf[from] = balance - value;
        balanceOf[to] += value;
        emit Transfer(from, to, value);
    }
}
